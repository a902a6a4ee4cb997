"""``mcpctl doctor NAME``: run what the MCP client runs, time every phase, and say what is wrong.

The phases, in the order the client goes through them::

    profile  config entry  key file  host key  connect  spawn  initialize  tools/list  tool call

The spawn phase starts *exactly* the command of the client's entry (``mcpctl connect NAME``, or the
OpenSSH command line of an ssh-style entry) with the entry's ``env``; without an entry, the default
proxy command is checked instead. The time from spawn to the ``initialize`` answer is compared with
the 60 s that Claude Desktop waits (and that cannot be raised).

Every finding that is not fine carries one sentence saying what to do. A hard failure (nothing after
it can work: no profile, no key, a changed host key, an unreachable host, a server that does not
start) marks the later phases skipped; other findings (a missing or broken entry, a key others can
read) are reported and the rest still runs.

The modules, by phase:

- ``report``: :class:`Check` and :class:`DoctorReport`, what a run hands back;
- ``context``: the state the phases share and how each records its check;
- ``local``: the profile and the key file; ``launch`` and ``entry``: the client's config entry
  and the command it starts;
- ``reach``: the host key and the SSH login;
- ``server``: spawn, initialize against the budget, tools/list and one tool call;
- ``run``: the phases in order, :func:`run_doctor`.
"""

from provision.doctor.report import BUDGET_S, PHASES, Check, DoctorReport
from provision.doctor.run import diagnose, run_doctor
from provision.doctor.server import CHEAP_TOOLS, EXPECTED_TOOLS

__all__ = [
    "BUDGET_S",
    "CHEAP_TOOLS",
    "EXPECTED_TOOLS",
    "PHASES",
    "Check",
    "DoctorReport",
    "diagnose",
    "run_doctor",
]
