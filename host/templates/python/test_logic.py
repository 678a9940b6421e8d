import unittest

from logic import verdict


class VerdictTest(unittest.TestCase):
    def test_over_budget_warns(self):
        self.assertFalse(verdict("/data", 2, 10, 100)[0])
        warn, line = verdict("/data", 2, 1000, 100)
        self.assertTrue(warn)
        self.assertTrue(line.endswith("over budget"), line)


if __name__ == "__main__":
    unittest.main()
