import os


def list_python_files(folder):
    """Return the paths of the .py files directly inside folder."""
    
    return sorted(paths)


if __name__ == "__main__":
    print(list_python_files("."))
