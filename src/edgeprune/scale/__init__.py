"""Spreading the evaluations of a prune over workers: an executor runs independent tasks (serially
here, or as Ray tasks on a cluster), and an :class:`Evaluator` turns candidate plans into such tasks.

What travels to a worker is plain data: the model's spec and weights (a state dict, put once in the
object store), the data and evaluation specs, the calibration batches, and one plan per task. A
worker rebuilds the model from its spec, cuts it with the plan and returns the score. Nothing here
imports Ray until a Ray executor is asked for.
"""
from edgeprune.scale.evaluator import EvalJob, Evaluator, measure_plan
from edgeprune.scale.executor import Executor, ExecutorError, SerialExecutor, TaskFailed, get_executor

__all__ = ["EvalJob", "Evaluator", "Executor", "ExecutorError", "SerialExecutor", "TaskFailed", "get_executor",
           "measure_plan"]
