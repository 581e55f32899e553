"""Generation: the protocol's prompts answered by a backend (``hf`` in this process, or a serving engine)."""

# Sequences per generate call when none is named (`generate --batch-size`, a study's `generation`
# section): speed only, the answers do not depend on it.
GENERATION_BATCH_SIZE = 16
