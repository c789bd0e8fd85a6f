"""``python -m twi_asr`` is the same as the ``twi-asr`` command."""

from .cli import main

if __name__ == "__main__":
    main()
