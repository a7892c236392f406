"""`python -m yolov7lib` runs the `yolov7` command line (also the entry point for torchrun)."""

from yolov7lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
