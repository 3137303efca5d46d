"""Prepare-then-execute runtime: shape inference, kernel choice, memory plan, executor."""
