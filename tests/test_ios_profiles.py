"""iPhone profiles: every family from 12 to 16 is matched by ProductType; unknown ones fall back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.profiles import default_dir
from harness.profiles import match as _match

PROFILE_DIR = default_dir()


def match_profile(facts: dict) -> object:
    return _match({k: str(v) for k, v in facts.items()}, "ios")

IOS_PROFILES = sorted(PROFILE_DIR.glob("iphone-*.toml"))


def test_iphone_12_to_16_families_are_all_there():
    names = {p.stem for p in IOS_PROFILES}
    for gen in (12, 13, 14, 15, 16):
        assert f"iphone-{gen}" in names and f"iphone-{gen}-pro" in names and f"iphone-{gen}-pro-max" in names
    assert {"iphone-12-mini", "iphone-13-mini", "iphone-14-plus", "iphone-15-plus", "iphone-16-plus"} <= names


@pytest.mark.parametrize("path", IOS_PROFILES, ids=lambda p: p.stem)
def test_each_profile_matches_its_own_product_type(path: Path):
    data = tomllib.loads(path.read_text())
    assert data["name"] == path.stem and data["platform"] == "ios"
    assert set(data["delegates"]) == {"cpu", "xnnpack", "gpu", "coreml"}
    profile = match_profile(dict(data["properties"]))
    assert profile is not None and profile.name == path.stem
    assert profile.marketing_name == data["marketing_name"] and profile.extra["chip"].startswith("A1")


def test_product_types_are_unique():
    seen = [t for p in IOS_PROFILES for t in tomllib.loads(p.read_text())["match"]["ProductType"]]
    assert len(seen) == len(set(seen))


def test_unknown_iphone_falls_back_to_generic_and_the_fake_wins_over_iphone_13():
    assert match_profile({"ProductType": "iPhone99,1"}).name == "generic-ios"
    fake = tomllib.loads((PROFILE_DIR / "fake-iphone.toml").read_text())
    assert match_profile(fake["properties"]).name == "fake-iphone"
    assert match_profile({**fake["properties"], "DeviceName": "Ana's iPhone"}).name == "iphone-13"
    assert match_profile({"ProductType": "Watch6,1"}).name == "generic-ios"
