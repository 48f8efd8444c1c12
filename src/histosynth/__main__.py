"""``python -m histosynth``: the ``histosynth`` command, for launchers that start modules (``torchrun -m histosynth``)."""

from histosynth.cli import main

if __name__ == "__main__":
    main()
