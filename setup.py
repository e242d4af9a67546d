"""Thin shim: metadata lives in pyproject.toml."""
import setuptools

setuptools.setup()
