"""gan-tui: train the classic MNIST GAN and watch it live in your terminal."""

__version__ = "0.1.0"
