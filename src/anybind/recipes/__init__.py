"""Recipes: the loops (train, evaluate, demo) as plain functions over library pieces."""
