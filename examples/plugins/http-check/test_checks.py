"""`python -m unittest` in examples/plugins/http-check: config and verdicts."""

import unittest

from checks import ConfigError, parse_config, verdict


class ConfigTest(unittest.TestCase):
    def test_defaults_and_parts(self):
        cfg = parse_config('{"url": "http://127.0.0.1:8080/health?deep=1"}')
        self.assertEqual((cfg.scheme, cfg.authority, cfg.path), ("http", "127.0.0.1:8080", "/health?deep=1"))
        self.assertEqual((cfg.expect_status, cfg.warn_ms, cfg.fail_ms), ([200], 500, 2000))

    def test_errors_say_what_to_fix(self):
        with self.assertRaisesRegex(ConfigError, "`url` is required"):
            parse_config("{}")
        with self.assertRaisesRegex(ConfigError, "unknown key `timeout`"):
            parse_config('{"url": "http://a/", "timeout": 1}')
        with self.assertRaisesRegex(ConfigError, "absolute http"):
            parse_config('{"url": "ftp://a/"}')
        with self.assertRaisesRegex(ConfigError, "warn_ms"):
            parse_config('{"url": "http://a/", "warn_ms": 900, "fail_ms": 100}')


class VerdictTest(unittest.TestCase):
    cfg = parse_config('{"url": "http://a/health", "warn_ms": 100, "fail_ms": 1000, "expect_body": "ok"}')

    def test_fast_and_right_is_ok(self):
        self.assertEqual(verdict(self.cfg, 200, 12, b'{"status":"ok"}')[0], "ok")

    def test_slow_is_a_warning_then_a_failure(self):
        self.assertEqual(verdict(self.cfg, 200, 150, b"ok")[0], "warning")
        self.assertEqual(verdict(self.cfg, 200, 1500, b"ok")[0], "failed")

    def test_wrong_status_or_body_fails(self):
        status, line = verdict(self.cfg, 503, 5, b"ok")
        self.assertEqual(status, "failed")
        self.assertIn("expected 200", line)
        self.assertEqual(verdict(self.cfg, 200, 5, b"down")[0], "failed")


if __name__ == "__main__":
    unittest.main()
