"""The contracts a plugin and every stage build on: errors, the generic registry, METHOD's defaults, the task
contract with its answer and data helpers, the model-spec grammar and the progress protocol."""
