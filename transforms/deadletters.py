"""Dead-letter records: one per input that could not become segments, with a stable reason.

They are written as JSON Lines under ``DIR/errors/`` and counted by reason in ``metadata.json``;
every matched input is either featurized or has exactly one dead letter.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from transforms.audio import AudioError

__all__ = ["DeadLetter", "dead_letter_from_error", "INTERNAL_ERROR", "DEAD_LETTERS"]

#: Output tag of every transform that turns failed inputs into dead letters (audio, inputs, label).
DEAD_LETTERS = "dead_letters"
#: Reason for an exception that is not an :class:`~transforms.audio.AudioError` (a bug or an
#: environment problem); the message carries the exception type and text.
INTERNAL_ERROR = "internal_error"


@dataclasses.dataclass
class DeadLetter:
    """A failed input.

    Attributes
    ----------
    uri : str
        The input that failed.
    stage : str
        ``read``, ``decode``, ``segment`` (audio stages) or a later one such as ``infer``.
    reason : str
        Stable short code (``empty``, ``decode_error``, ``too_short``, ...), used for counting.
    message : str
        Human-readable detail.
    track_id : str
        The track's id, when known.
    """

    uri: str
    stage: str
    reason: str
    message: str
    track_id: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """One JSON Lines record (no trailing newline)."""
        return json.dumps(self.to_dict(), sort_keys=False, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "DeadLetter":
        data: dict[str, Any] = json.loads(line)
        return cls(**{f.name: str(data.get(f.name, "")) for f in dataclasses.fields(cls)})


def dead_letter_from_error(ref: Any, err: BaseException, *, stage: str | None = None) -> DeadLetter:
    """The dead letter for ``ref`` (a :class:`~transforms.sources.TrackRef`) failing with ``err``.

    An :class:`AudioError` keeps its reason and stage; any other exception becomes
    ``internal_error`` (with its type in the message) at ``stage`` or ``"process"``.
    """
    if isinstance(err, AudioError):
        return DeadLetter(
            uri=ref.uri, stage=stage or err.stage, reason=err.reason, message=err.message, track_id=ref.track_id
        )
    return DeadLetter(
        uri=ref.uri,
        stage=stage or "process",
        reason=INTERNAL_ERROR,
        message=f"{type(err).__name__}: {err}",
        track_id=ref.track_id,
    )
