"""The store's names for `worldsim.spaces` (serialising spaces, stacking and checking actions).

The home of these is `worldsim.spaces`; this module keeps `worldsim.data.spaces` imports working.
"""

from worldsim.spaces import check_actions, deserialize_space, serialize_space, stack_actions

__all__ = ["check_actions", "deserialize_space", "serialize_space", "stack_actions"]
