"""One run from a trained model to a deployable pruned model: recipe, inputs, plan search,
fine-tuning, measurement, export and the run directory. ``edgeprune prune`` is a thin shell
around :func:`run_pipeline`.

Example:
    >>> from edgeprune.run import recipe_from_mapping, run_pipeline
    >>> recipe = recipe_from_mapping({"model": "digits", "data": "digits", "target": "params=0.5"})
    >>> outcome = run_pipeline(recipe, "runs/digits")          # doctest: +SKIP
    >>> outcome.metrics["after"]["accuracy"]                   # doctest: +SKIP
"""
from edgeprune.run.errors import BadInputError, BudgetNotMetError, ExitCode, RunError
from edgeprune.run.pipeline import RunOutcome, run_pipeline
from edgeprune.run.recipe import RecipeError, RunRecipe, load_recipe, parse_target, recipe_from_mapping
from edgeprune.run.rundir import COMPLETE, is_complete, require_complete

__all__ = ["BadInputError", "BudgetNotMetError", "COMPLETE", "ExitCode", "RecipeError", "RunError", "RunOutcome",
           "RunRecipe", "is_complete", "load_recipe", "parse_target", "recipe_from_mapping",
           "require_complete", "run_pipeline"]
