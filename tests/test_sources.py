"""Inputs: glob rules, manifests, track ids, labels, splits and fingerprints (no Beam)."""

from __future__ import annotations

import collections
import json
import os
import uuid

import fsspec
import pytest

from transforms.sources import (
    TrackRef,
    assign_split,
    assign_splits,
    expand_braces,
    expand_inputs,
    file_fingerprint,
    parse_split_fractions,
    read_manifest,
    refs_from_uris,
)


@pytest.fixture
def tree(tmp_path):
    """root/top.wav, root/a/x.wav, root/a/b/y.au, root/a/b/z.flac, root/a/.hidden.wav, root/a/notes.txt"""
    root = tmp_path / "root"
    for rel in ("top.wav", "a/x.wav", "a/b/y.au", "a/b/z.flac", "a/._x.wav", "a/notes.txt"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"data")
    return root


def names(uris):
    return sorted(os.path.relpath(u, u.split("/root/")[0] + "/root") for u in uris)


def test_globstar_matches_zero_or_more_folders(tree):
    # '**' as a component includes files directly in the root (fsspec/bash globstar, unlike Beam)
    assert names(expand_inputs([f"{tree}/**/*.wav"])) == ["a/x.wav", "top.wav"]


def test_beam_style_globstar_means_the_same(tree):
    assert expand_inputs([f"{tree}/**.wav"]) == expand_inputs([f"{tree}/**/*.wav"])


def test_brace_sets_are_expanded(tree):
    assert expand_braces("r/*.{wav,au}") == ["r/*.wav", "r/*.au"]
    assert names(expand_inputs([f"{tree}/**/*.{{au,flac}}"])) == ["a/b/y.au", "a/b/z.flac"]


def test_single_star_stays_in_one_folder(tree):
    assert names(expand_inputs([f"{tree}/*/*.wav"])) == ["a/x.wav"]


def test_folder_means_every_visible_file_below(tree):
    got = names(expand_inputs([str(tree)]))
    # hidden files are skipped; non-audio files are kept (they become dead letters downstream)
    assert got == ["a/b/y.au", "a/b/z.flac", "a/notes.txt", "a/x.wav", "top.wav"]


def test_overlapping_patterns_are_deduplicated_and_sorted(tree):
    uris = expand_inputs([f"{tree}/**/*.wav", f"{tree}/a/x.wav", f"{tree}/top.wav"])
    assert uris == sorted(set(uris)) and len(uris) == 2
    assert all(os.path.isabs(u) for u in uris)


def test_pattern_matching_nothing_is_an_error(tree):
    with pytest.raises(ValueError, match="matches no files"):
        expand_inputs([f"{tree}/**/*.wav", f"{tree}/**/*.mp3"])
    with pytest.raises(ValueError, match="matches no files"):
        expand_inputs([f"{tree}/missing.wav"])
    with pytest.raises(ValueError):
        expand_inputs([])


def test_memory_filesystem_gives_full_uris():
    root = f"memory://sources-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    for rel in ("rock/r1.wav", "jazz/j1.wav", "jazz/deep/j2.wav"):
        fs.pipe(f"{root}/{rel}".replace("memory://", "/"), b"x")
    uris = expand_inputs([f"{root}/**/*.wav"])
    assert len(uris) == 3 and all(u.startswith("memory://") for u in uris)
    with fsspec.open(uris[0], "rb") as f:  # the URIs are readable as given
        assert f.read() == b"x"


def test_labels_and_track_ids_from_gtzan_layout():
    uris = ["/data/gtzan/blues/blues.00000.wav", "/data/gtzan/jazz/jazz.00001.au"]
    refs = refs_from_uris(uris)
    assert [r.label for r in refs] == ["blues", "jazz"]
    assert [r.track_id for r in refs] == ["blues/blues.00000.wav", "jazz/jazz.00001.au"]
    # the id does not depend on where the collection lives, so hashed splits survive a copy
    moved = refs_from_uris([u.replace("/data/gtzan", "s3://bucket/corpus") for u in uris])
    assert [r.track_id for r in moved] == [r.track_id for r in refs]


def test_track_ids_grow_until_unique():
    uris = ["/a/x/rock/song.wav", "/b/x/rock/song.wav", "/b/y/pop/song.wav"]
    ids = [r.track_id for r in refs_from_uris(uris)]
    assert len(set(ids)) == 3
    assert ids[2] == "pop/song.wav"  # no clash: shortest form
    assert ids[0].endswith("rock/song.wav") and ids[0] != ids[1]


def test_manifest_csv_and_jsonl(tmp_path):
    (tmp_path / "m.csv").write_text(
        "uri,label,split,group,track_id\n"
        "audio/a.wav,rock,test,artist1,\n"
        "/abs/b.wav,jazz,,artist1,my-b\n"
        "s3://bucket/c.wav,,,,\n"
    )
    refs = read_manifest(str(tmp_path / "m.csv"))
    assert refs[0] == TrackRef(uri=str(tmp_path / "audio/a.wav"), track_id="audio/a.wav", label="rock",
                               split="test", group="artist1")
    assert refs[1].track_id == "my-b" and refs[1].uri == "/abs/b.wav"
    assert refs[2].label == "" and refs[2].split == ""  # a manifest never guesses labels from folders

    lines = [{"uri": "x/1.wav", "label": "pop"}, {"uri": "x/2.wav", "split": "validation"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    refs = read_manifest(str(tmp_path / "m.jsonl"))
    assert [r.label for r in refs] == ["pop", ""] and refs[1].split == "validation"


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,label\na.wav,rock\n", "uri"),
        ("uri,split\na.wav,training\n", "split"),
        ("uri,track_id\na.wav,t\nb.wav,t\n", "track_id"),
        ("uri\na.wav\na.wav\n", "repeats"),
        ("uri\n", "no rows"),
    ],
)
def test_bad_manifests_name_the_problem(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_manifest(str(tmp_path / "m.csv"))


def test_split_fractions_parse_and_validate():
    assert parse_split_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    for bad in ("0.8,0.1", "0.5,0.5,0.5", "a,b,c", "1.2,-0.1,-0.1"):
        with pytest.raises(ValueError):
            parse_split_fractions(bad)


def test_assign_split_is_deterministic_and_follows_fractions():
    keys = [f"genre/track{i:05d}.wav" for i in range(20000)]
    first = [assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    assert first == [assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    share = collections.Counter(first)
    assert abs(share["train"] / len(keys) - 0.8) < 0.015
    assert abs(share["validation"] / len(keys) - 0.1) < 0.01
    assert {assign_split(k, (1.0, 0.0, 0.0)) for k in keys[:500]} == {"train"}
    assert {assign_split(k, (0.0, 0.0, 1.0)) for k in keys[:500]} == {"test"}


def test_groups_stay_together_and_manifest_split_wins():
    refs = [TrackRef(uri=f"/x/{i}.wav", track_id=f"t{i}", group=f"artist{i % 7}") for i in range(300)]
    refs.append(TrackRef(uri="/x/fixed.wav", track_id="fixed", group="artist0", split="test"))
    out = assign_splits(refs, (0.6, 0.2, 0.2))
    by_group = collections.defaultdict(set)
    for r in out[:-1]:
        by_group[r.group].add(r.split)
    assert all(len(s) == 1 for s in by_group.values())
    assert len(set().union(*by_group.values())) > 1  # the groups do spread over splits
    assert out[-1].split == "test"


def test_file_fingerprint_changes_with_content(tmp_path):
    p = tmp_path / "a.wav"
    p.write_bytes(b"1234")
    before = file_fingerprint(str(p))
    p.write_bytes(b"123456")
    assert before and file_fingerprint(str(p)) != before
    assert file_fingerprint(str(tmp_path / "missing.wav")) == ""
