"""A wire-level fake iPhone that unmodified pymobiledevice3 talks to (see ``device.py``)."""

from harness.testing.ios.device import BENCH_BUNDLE_ID, FakeFaults, FakeIPhone, fake_iphone_env, make_test_ipa

__all__ = ["BENCH_BUNDLE_ID", "FakeFaults", "FakeIPhone", "fake_iphone_env", "make_test_ipa"]
