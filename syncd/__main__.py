"""`python -m syncd` is the `syncd` command (and `run` the console script's entry point)."""


def run() -> None:
    try:
        from syncd.cli import main
    except KeyboardInterrupt:  # Ctrl-C while Python still loads syncd: no traceback
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    run()
