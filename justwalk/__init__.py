"""JustWalk Stream: real-time gait monitoring for people with multiple sclerosis."""

__version__ = "0.1.0"
