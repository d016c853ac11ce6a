"""`python -m widget_server.cli.entry` runs the CLI without relying on the console script being on PATH."""

from widget_server.cli import main

if __name__ == "__main__":
    main()
