"""Inputs: glob rules, manifests, track ids, labels, splits and listing versions (plain functions),
and ReadTrackRefs, the transform that reads them inside the pipeline."""

from __future__ import annotations

import collections
import json
import os
import uuid

import fsspec
import fsspec.implementations.local
import pytest

from transforms.sources import (
    ReadTrackRefs,
    TrackRef,
    assign_split,
    assign_splits,
    check_manifest_header,
    check_patterns,
    expand_braces,
    expand_inputs,
    match_pattern,
    parse_split_fractions,
    pattern_base,
    read_manifest,
    refs_from_pattern,
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


def test_labels_and_track_ids_from_gtzan_layout(tmp_path):
    for rel in ("gtzan/blues/blues.00000.wav", "gtzan/jazz/jazz.00001.au"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    refs = sorted(refs_from_pattern(f"{tmp_path}/gtzan/**/*.*"), key=lambda r: r.uri)
    assert [r.label for r in refs] == ["blues", "jazz"]
    assert [r.track_id for r in refs] == ["blues/blues.00000.wav", "jazz/jazz.00001.au"]
    assert all(r.listing.startswith("size:1:mtime:") for r in refs)  # from the listing, no extra call
    # the id does not depend on where the collection lives, so hashed splits survive a copy
    fs = fsspec.filesystem("memory")
    root = f"memory://ids-{uuid.uuid4().hex}"
    for r in refs:
        fs.pipe(r.uri.replace(str(tmp_path / "gtzan"), root), b"x")
    moved = sorted(refs_from_pattern(f"{root}/*/*"), key=lambda r: r.uri)
    assert [r.track_id for r in moved] == [r.track_id for r in refs]


def test_track_id_is_the_path_below_the_patterns_fixed_folders():
    assert pattern_base("/data/gtzan/**/*.wav") == "/data/gtzan"
    assert pattern_base("s3://bucket/x/*/y/*.mp3") == "s3://bucket/x"
    assert pattern_base("/data/out[[]1]/a.wav") == "/data"  # an escaped '[' is still a wildcard component


def test_adding_inputs_never_changes_an_existing_id(tree, tmp_path):
    other = tmp_path / "other" / "a"
    other.mkdir(parents=True)
    (other / "x.wav").write_bytes(b"data")  # same relative path as root/a/x.wav
    alone = {r.uri: r.track_id for r in refs_from_pattern(f"{tree}/**/*.wav")}
    with_other = {r.uri: r.track_id for p in (f"{tree}/**/*.wav", f"{tmp_path}/other/**/*.wav")
                  for r in refs_from_pattern(p)}
    assert {u: with_other[u] for u in alone} == alone


def test_literal_brackets_and_unreadable_folders(tmp_path, monkeypatch):
    odd = tmp_path / "live [2019]" / "rock"
    odd.mkdir(parents=True)
    (odd / "a.wav").write_bytes(b"x")
    import glob as pyglob

    escaped = pyglob.escape(str(tmp_path / "live [2019]")) + "/**/*.wav"
    # the escaped component is a pattern component, so the id starts at its parent folder
    assert [m.relative for m in match_pattern(escaped)] == ["live [2019]/rock/a.wav"]
    assert [r.track_id for r in refs_from_pattern(str(tmp_path / "live [2019]"))] == ["rock/a.wav"]  # a folder
    locked = tmp_path / "live [2019]" / "locked"
    locked.mkdir()
    (locked / "b.wav").write_bytes(b"x")
    # the suite runs as root, which reads any folder: make listing this one fail as it does for a user
    real_ls = fsspec.implementations.local.LocalFileSystem.ls

    def ls(self, path, *args, **kwargs):
        if str(path).rstrip("/") == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_ls(self, path, *args, **kwargs)

    monkeypatch.setattr(fsspec.implementations.local.LocalFileSystem, "ls", ls)
    found = list(match_pattern(str(tmp_path / "live [2019]")))
    assert [m.relative for m in found if hasattr(m, "relative")] == ["rock/a.wav"]
    letters = [m for m in found if not hasattr(m, "relative")]
    assert [(d.reason, d.uri) for d in letters] == [("unreadable_folder", str(locked))]


def test_launcher_checks_read_no_rows(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        check_patterns([str(tmp_path / "nowhere" / "**" / "*.wav")])
    (tmp_path / "m.csv").write_text("path,label\na.wav,rock\n")
    with pytest.raises(ValueError, match="'uri' column"):
        check_manifest_header(str(tmp_path / "m.csv"))
    with pytest.raises(ValueError, match="matches no file"):
        check_manifest_header(str(tmp_path / "none-*.csv"))


def test_manifest_csv_and_jsonl(tmp_path):
    (tmp_path / "m.csv").write_text(
        "uri,label,split,group,track_id\n"
        "audio/a.wav,rock,test,artist1,\n"
        "/abs/b.wav,jazz,,artist1,my-b\n"
        "s3://bucket/c.wav,,,,\n"
    )
    refs = read_manifest(str(tmp_path / "m.csv"))
    assert refs[0] == TrackRef(uri=str(tmp_path / "audio/a.wav"), track_id="audio/a.wav", label="rock",
                               split="test", group="artist1")  # id: the uri as written
    assert refs[1].track_id == "my-b" and refs[1].uri == "/abs/b.wav"
    assert refs[2].label == "" and refs[2].split == ""  # a manifest never guesses labels from folders

    lines = [{"uri": "x/1.wav", "label": "pop"}, {"uri": "x/2.wav", "split": "validation"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    refs = read_manifest(str(tmp_path / "m.jsonl"))
    assert [r.label for r in refs] == ["pop", ""] and refs[1].split == "validation"

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uri": ["p/1.wav", "p/2.wav"], "label": ["rock", "jazz"]}), tmp_path / "m.parquet")
    refs = read_manifest(str(tmp_path / "m.parquet"))
    assert [(r.track_id, r.label) for r in refs] == [("p/1.wav", "rock"), ("p/2.wav", "jazz")]
    assert refs[0].uri == str(tmp_path / "p/1.wav")


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,label\na.wav,rock\n", "uri"),
        ("uri,split\na.wav,training\n", "split"),
        ("uri,track_id\na.wav,t\nb.wav,t\n", "track_id"),
        ("uri\na.wav\na.wav\n", "repeats"),
        ("uri\n", "no rows"),
        ("uri,split\n,train\n", "missing 'uri'"),
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


def test_assign_split_is_pinned_and_follows_fractions():
    # pinned: a track's split may never change between versions (it would leak test tracks into training)
    pinned = {"blues/blues.00000.wav": ("train", "validation"), "jazz/jazz.00003.wav": ("train", "train"),
              "rock/rock.00042.au": ("train", "validation"), "artist-17": ("test", "test"), "a.wav": ("train", "test")}
    for key, (at_80, at_thirds) in pinned.items():
        assert assign_split(key, (0.8, 0.1, 0.1)) == at_80, key
        assert assign_split(key, (0.34, 0.33, 0.33)) == at_thirds, key
    keys = [f"genre/track{i:05d}.wav" for i in range(20000)]
    first = [assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
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


def test_listing_version_changes_with_content(tmp_path):
    p = tmp_path / "a.wav"
    p.write_bytes(b"1234")
    before = next(match_pattern(str(p))).listing
    p.write_bytes(b"123456")
    assert before and next(match_pattern(str(p))).listing != before


def test_read_track_refs_in_a_pipeline(tree, tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join([json.dumps({"uri": "a.wav", "label": "x"}), json.dumps({"uri": "a.wav"}),
                                   "{broken", json.dumps({"uri": "b.wav", "track_id": "a.wav"})]) + "\n")
    with TestPipeline() as p:
        by_glob = p | "Glob" >> ReadTrackRefs(patterns=[f"{tree}/**/*.wav", f"{tree}/a/*.wav"])  # a/x.wav twice
        assert_that(by_glob["refs"] | "GlobIds" >> beam.Map(lambda r: (r.track_id, r.label)),
                    equal_to([("a/x.wav", "a"), ("top.wav", "root")]), label="glob refs")
        assert_that(by_glob["dead_letters"], equal_to([]), label="glob letters")
        by_manifest = p | "Manifest" >> ReadTrackRefs(manifest=str(manifest))
        assert_that(by_manifest["refs"] | "ManifestIds" >> beam.Map(lambda r: (r.track_id, r.label)),
                    equal_to([("a.wav", "x")]), label="manifest refs")
        # the repeated uri, the broken line and the repeated id: one dead letter each, nothing lost
        assert_that(by_manifest["dead_letters"] | "Reasons" >> beam.Map(lambda d: d.reason),
                    equal_to(["duplicate_track_id", "bad_manifest_row", "duplicate_track_id"]), label="letters")
        sampled = p | "Sampled" >> ReadTrackRefs(patterns=[f"{tree}/**"], limit=2)
        assert_that(sampled["refs"] | "Limited" >> beam.Map(lambda r: r.track_id),
                    equal_to(["a/b/y.au", "a/b/z.flac"]), label="limit")
