"""Task modules: thin wrappers that load ids from their arguments and call one service."""
