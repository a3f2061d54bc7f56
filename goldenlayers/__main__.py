"""`python -m goldenlayers ...` (and `torchrun ... -m goldenlayers run CONFIG`): the `goldenlayers` command."""

from goldenlayers.cli import app

if __name__ == "__main__":
    app()
