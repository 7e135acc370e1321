"""Models and how text is sampled from them: model specs, loading and compression, generation, the back ends,
lockstep scheduling, thread plans, prompts and the teacher contract."""
