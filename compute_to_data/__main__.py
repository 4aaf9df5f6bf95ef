"""``python -m compute_to_data`` is the same as the ``c2d`` command."""

from compute_to_data.cli.main import main

if __name__ == "__main__":
    main()
