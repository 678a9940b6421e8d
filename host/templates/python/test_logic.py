import unittest

from logic import Config, verdict
from opsd_sdk import ConfigError, load_config


class VerdictTest(unittest.TestCase):
    def test_over_budget_warns(self):
        self.assertFalse(verdict("/data", 2, 10, 100)[0])
        warn, line = verdict("/data", 2, 1000, 100)
        self.assertTrue(warn)
        self.assertTrue(line.endswith("over budget"), line)


class ConfigTest(unittest.TestCase):
    def test_keys_are_checked(self):
        self.assertEqual(load_config('{"dir": "/data", "max_bytes": 5}', Config), Config("/data", 5))
        with self.assertRaisesRegex(ConfigError, "`max_bytes` is required"):
            load_config('{"dir": "/data"}', Config)
        with self.assertRaisesRegex(ConfigError, "unknown key `maxbytes`"):
            load_config('{"dir": "/data", "max_bytes": 5, "maxbytes": 1}', Config)
        with self.assertRaisesRegex(ConfigError, "`max_bytes` must be int"):
            load_config('{"dir": "/data", "max_bytes": "5"}', Config)


if __name__ == "__main__":
    unittest.main()
