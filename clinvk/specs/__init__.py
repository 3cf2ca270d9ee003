"""Request specs: what a prompt, parallel, chain or compare request asks for, and the marshmallow
schemas that read them from JSON or YAML. Neutral ground shared by the HTTP API and the command line."""

from .fields import (MAX_EXTRA_FLAGS, MAX_PROMPT_CHARS, MAX_SYSTEM_PROMPT_CHARS, RequestSchema, StrictBoolean,
                     StrictInteger, flatten_validation)
from .orchestration import (ChainRequestSchema, ChainSpec, ChainStepSchema, CompareRequestSchema, CompareSpec,
                            ParallelRequestSchema, ParallelSpec, ParallelTaskSchema, Step)
from .prompt import PromptOptionsSchema, PromptRequest, PromptRequestSchema, stream_of

__all__ = [
    "MAX_EXTRA_FLAGS", "MAX_PROMPT_CHARS", "MAX_SYSTEM_PROMPT_CHARS", "RequestSchema", "StrictBoolean",
    "StrictInteger", "flatten_validation", "ChainRequestSchema", "ChainSpec", "ChainStepSchema",
    "CompareRequestSchema", "CompareSpec", "ParallelRequestSchema", "ParallelSpec", "ParallelTaskSchema", "Step",
    "PromptOptionsSchema", "PromptRequest", "PromptRequestSchema", "stream_of",
]
