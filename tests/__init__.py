"""Tests for wirelab; a package so that ``tests.fixtures`` imports by its full name."""
