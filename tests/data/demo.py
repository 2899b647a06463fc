import os
import unittest


def list_python_files(folder):
    """Return the names of the .py files directly inside folder, sorted."""
    return sorted(name for name in os.listdir(folder) if name.endswith(".py"))


class ListPythonFilesTest(unittest.TestCase):
    def test_finds_this_file(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.assertIn(os.path.basename(__file__), list_python_files(here))


if __name__ == "__main__":
    unittest.
