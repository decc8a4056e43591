"""The architecture as data (spec, budget) and what is computed from it alone: model, costs, paper nets."""
