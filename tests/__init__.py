"""The test suite: a package so that test modules mirroring harness/ may share a name across stages."""
