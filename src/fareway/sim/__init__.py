"""The provider simulator (``fareway sim``): a real HTTP server imitating every upstream dialect.

Public API::

    from fareway.sim import SimConfig, create_app, start_sim, run_sim

    handle = await start_sim("127.0.0.1", 0, SimConfig.default())   # port 0 picks a free port
    base = handle.url + "/openai/v1"        # or /groq/v1, /anthropic, /gemini/v1beta, ...
    await handle.stop()

See :mod:`fareway.sim.server` for routes and the ``/_sim`` control API, :mod:`fareway.sim.faults`
for fault kinds, :mod:`fareway.sim.profiles` for latency profiles and the TOML config,
:mod:`fareway.sim.content` for how replies and token counts are generated.
"""

from fareway.sim.faults import Fault
from fareway.sim.profiles import DEMO_PROFILES, Dist, Profile, SimConfig
from fareway.sim.server import SimHandle, create_app, run_sim, start_sim

__all__ = [
    "DEMO_PROFILES",
    "Dist",
    "Fault",
    "Profile",
    "SimConfig",
    "SimHandle",
    "create_app",
    "run_sim",
    "start_sim",
]
