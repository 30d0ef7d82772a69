"""`dinctl download taobao | taobao-ad`: --from files, archives or folders; headers checked."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from dinctl.cli.main import app

SAMPLES = Path(__file__).resolve().parents[1] / "dinctl" / "sample_data"
AD_FILES = ("raw_sample.csv", "ad_feature.csv", "user_profile.csv", "behavior_log.csv")


def _invoke(*args: str) -> object:
    return CliRunner().invoke(app, ["download", *args])


def test_taobao_from_zip_then_preprocess(tmp_path: Path) -> None:
    zpath = tmp_path / "UserBehavior.csv.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(SAMPLES / "taobao" / "UserBehavior.csv", "UserBehavior/UserBehavior.csv")
    out = tmp_path / "raw"
    r = _invoke("taobao", "--from", str(zpath), "--out", str(out), "--json")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    manifest = json.loads(r.stdout)  # type: ignore[attr-defined]
    entry = manifest["files"]["UserBehavior.csv"]
    assert entry["how"] == "extracted"
    assert entry["from"] == "UserBehavior.csv.zip:UserBehavior/UserBehavior.csv"
    assert (out / "UserBehavior.csv").read_bytes() == (
        SAMPLES / "taobao" / "UserBehavior.csv"
    ).read_bytes()
    r = CliRunner().invoke(
        app, ["preprocess", "taobao", "--raw", str(out), "--out", str(tmp_path / "ds")]
    )
    assert r.exit_code == 0, r.output


def test_taobao_ad_from_folder_of_tar_gz_and_csv(tmp_path: Path) -> None:
    src = tmp_path / "got"
    src.mkdir()
    for name in AD_FILES:
        if name == "ad_feature.csv":
            shutil.copy(SAMPLES / "taobao-ad" / name, src / name)
        else:
            with tarfile.open(src / f"{name}.tar.gz", "w:gz") as tf:
                tf.add(SAMPLES / "taobao-ad" / name, arcname=name)
    out = tmp_path / "raw"
    r = _invoke("taobao-ad", "--from", str(src), "--out", str(out))
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    for name in AD_FILES:
        assert (out / name).read_bytes() == (SAMPLES / "taobao-ad" / name).read_bytes()
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert (
        manifest["files"]["behavior_log.csv"]["from"] == "behavior_log.csv.tar.gz:behavior_log.csv"
    )
    assert manifest["files"]["ad_feature.csv"]["how"] in ("hard link", "copy")


def test_wrong_file_missing_file_and_no_way_in_are_one_line(tmp_path: Path) -> None:
    src = tmp_path / "got"
    shutil.copytree(SAMPLES / "taobao-ad", src)
    (src / "behavior_log.csv").write_text("user,time,btag,cate,brand\n")
    r = _invoke("taobao-ad", "--from", str(src), "--out", str(tmp_path / "raw"))
    assert r.exit_code == 1  # type: ignore[attr-defined]
    assert "behavior_log.csv:1: header is 'user,time,btag,cate,brand'" in r.output  # type: ignore[attr-defined]
    (src / "behavior_log.csv").unlink()
    r = _invoke("taobao-ad", "--from", str(src), "--out", str(tmp_path / "raw2"))
    assert "has no behavior_log.csv (nor behavior_log.csv.zip or .tar.gz)" in r.output  # type: ignore[attr-defined]
    r = _invoke("taobao", "--out", str(tmp_path / "raw3"))
    assert r.exit_code == 1  # type: ignore[attr-defined]
    assert "taobao sits behind a Tianchi login: there is no built-in mirror" in r.output  # type: ignore[attr-defined]
    assert "https://tianchi.aliyun.com/dataset/649" in r.output  # type: ignore[attr-defined]
    bad = tmp_path / "UserBehavior.csv"
    bad.write_text("user,item,category,behavior_type,timestamp\n")
    r = _invoke("taobao", "--from", str(bad), "--out", str(tmp_path / "raw4"))
    assert "UserBehavior.csv:1: column 'user' holds 'user', expected an integer" in r.output  # type: ignore[attr-defined]
