"""``python -m medmodal ...`` (and ``torchrun ... -m medmodal ...``): the same app as the ``medmodal`` command."""

from medmodal.cli import main

if __name__ == "__main__":
    main()
