"""``python -m trackflow`` is the ``trackflow`` command."""

from trackflow.cli import main

if __name__ == "__main__":
    main()
