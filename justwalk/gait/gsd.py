"""Streaming walking-bout (gait sequence) assembly from initial contacts.

Mobilise-D defines a walking bout from the steps themselves (Kirk et al. 2024, Sci Rep
14:1754; Micó-Amigo et al. 2023): a run of consecutive strides in which no break exceeds a
maximum (3 s) and with a minimum number of strides; the bout starts at its first and ends at
its last initial contact. The same rule is applied here, streaming, to the detected ICs:

- ICs closer than ``max_break_s`` (longer for a slow chain, see below) form a chain; a
  larger gap ends it;
- a chain is confirmed as walking once it holds ``min_ics`` (4) ICs: its ICs are then
  released as steps, later ICs as they come;
- a confirmed chain is reported as a walking bout when it closes only if it holds at least
  ``min_bout_ics`` (6) ICs, i.e. 4 strides, Mobilise-D's MicroWB minimum (mobgap
  ``WbAssembly`` rule ``NStridesCriteria(min_strides=4)``, Kirk et al. 2024); the steps of a
  shorter chain stay released (with a bout index that gets no ``BoutResult``);
- a chain that ends shorter is discarded (activity that is not walking);
- edges are trimmed by step rhythm: gait initiation and termination, sit-to-stand,
  reaching and the like add "steps" before the first and after the last true stride whose
  intervals do not follow the bout's rhythm. A leading IC whose interval to the next
  deviates from the chain's median step time by more than a factor ``lead_factor``
  (default: ``edge_factor``) either way is dropped before confirmation; once confirmed, an
  IC whose interval to its predecessor deviates by more than ``edge_factor`` is held back
  until an IC with a regular interval follows it (then it is released), else it is
  dropped (see the look-ahead below).
  ``edge_factor`` 2 (a missed or an extra step) is the value leave-one-participant-out
  chose in every fold (``justwalk.evaluation.gait``); normal step-to-step variability is a
  few % (stride-time CV 2-4 % in people with MS, Moon et al. 2016, Gait Posture 47:65-70);
- ICs that follow a postural transition (``transfers``: standing up, bending) cannot start
  a chain: the unconfirmed chain they would join is discarded;
- the stopping step is not part of the bout: the reference bouts end with the last complete
  stride (Kirk et al. 2024), and on every one of the 18 INDIP bouts of the Mobilise-D
  recordings the last IC detected from the trunk is one after the reference's last (the
  foot brought alongside the other). The newest ``drop_last_ics`` (1) ICs of a confirmed
  chain are therefore released as bout steps only when a further IC follows. The stopping
  step is still a step (the foot moves and lands; the foot-IMU reference of ``voisard_dev``
  lists it, and mobgap reports every IC of a gait sequence): with ``release_stop`` it is
  released as a step of no bout once the walk is known to have stopped (``AssemblyOutput.
  stops``): it counts in the step stream, not in the bout's extent or parameters. Chosen by
  leave-one-participant-out over the 12 development participants (12 of 12 folds):
  ``voisard_dev`` IC F1 0.939 -> 0.952, Mobilise-D 0.789 -> 0.774 (INDIP does not list
  it), bouts and cadence unchanged.

Look-ahead bounded by the step time. Every verdict waits for the ICs that decide it, and
a slow walker's ICs come slowly: at 40 steps/min a step lasts 1.5 s, so "three ICs" needs
3 s whatever the algorithm (the earlier fixed bound, each verdict final <= 3 s after the
sample, made every walker below about 67 steps/min invisible: no 3 ICs within 1.8 s).
The hold is therefore relative to the chain's own step time ``T`` (the median of its IC
intervals, at most ``max_step_s``):

- an unconfirmed chain whose first IC is ``max(max_hold_s, (min_early_ics - 1 +
  hold_slack_steps) T, max_hold_cap_s)`` old (1.8 s; at 40 steps/min 3.05 s) is confirmed if
  it holds ``min_early_ics`` (3) ICs, else that IC is no step (with one IC, T is unknown
  and ``max_hold_s`` applies: a second IC more than 1.8 s later is slower than Mobilise-D's
  longest stride, 3 s); before that confirmation a leading IC whose interval to the next
  is off the rhythm of the intervals after it (``lead_factor``) is dropped (``lead_rest``:
  with only 3 ICs the median of all intervals can never be twice the first), so a lone IC
  before the walk does not start it early;
- a held off-rhythm IC that is ``max(max_hold_s, (1 + hold_slack_steps) T)`` old is no
  step;
- a stopping-step candidate that old is no bout step if nothing followed it (the walk
  stopped; with ``release_stop`` it is released as a step of no bout), a bout step if
  off-rhythm ICs followed (the walk went on).

``hold_slack_steps`` (1 step) is the tolerance for the next IC to arrive late (step-time
CV in people with MS 4-20 %, Socie & Sosnoff 2013, Mult Scler Int 2013:645197): chosen by
leave-one-participant-out over the 12 development participants from none (the fixed
rule) / 0.5 / 1 step (11 of 12 folds: 1; ``benchmarks/gait_lopo.py``). The hold never exceeds
``max_hold_cap_s`` (3.05 s): the fall monitor's near-fall verdicts read the steps up to
4.0 s after their contact (``justwalk.falls``: look-ahead 3.5 s + half window 0.5 s; its
tests keep 0.1 s for block rounding), and the step detector's look-ahead is 0.82 s, so
every step verdict is final at most 3.87 s after its IC. That is within 2.7 s as before
for anyone walking at 100 steps/min or faster (3 T <= 1.8 s), and about two steps at 40
steps/min: 3 ICs at 1.5 s take 3 s whatever the algorithm, so at 40 steps/min a chain is
confirmed where two consecutive steps take 3.05 s or less together (the third IC is
otherwise late, its first IC is dropped and the next pair tries). ``max_step_s`` (1.5 s) is half
Mobilise-D's longest stride (3 s; mobgap ``StrideSelection``:
``IntervalDurationCriteria(min_duration_s=0.2, max_duration_s=3.0)``), so 40 steps/min
is the slowest walk the rules are meant for.

These timed decisions run in the order they fall due, so the output does not depend on how
the stream is chunked (the deadlines depend only on ICs already added). ``max_hold_s`` was
chosen by leave-one-participant-out from 1.6 / 1.8 / 2.0 s. A bout is closed, and its
summary emitted, when no IC has come for ``max_break_s`` (2.2 s; Mobilise-D allows breaks
of up to 3 s, mobgap ``WbAssembly``: ``MaxBreakCriteria(max_break_s=3)``, Kirk et al. 2024;
at 40 steps/min a step takes 1.5 s, well inside 2.2 s). ``break_steps`` (off by default)
would stretch it to that many of the chain's step times, at most ``max_break_cap_s``
(3 s): leave-one-participant-out kept it off in all 12 folds (it bridges pauses that the
references end bouts at). The per-step results are final long before a bout closes.
``hold_slack_steps=None`` gives the earlier fixed rule.

Turns. A turn is walking: Mobilise-D's walking bouts include their turns (turning steps are
strides, and the 3 s maximum break applies to them as to any other; Kirk et al. 2024), and
a ``voisard_dev`` reference bout runs from the first to the last contact of the walk, its
180 degree turn included. The trunk sees little vertical impact from short, pivoting
turning steps, so the step detector misses them, and a turn can leave a gap longer than
``max_break_s`` in the middle of a walk. A gap longer than ``max_break_s`` but at most
``turn_break_s`` (3 s, Mobilise-D's maximum break) therefore does not end a confirmed
chain when the trunk's heading (the integrated yaw rate, ``spatial``) at the IC after it
differs from the heading at the IC before it by ``turn_min_deg`` (45 degrees, the smallest
turn of El-Gohary et al. 2014 that Mobilise-D's turn detector and ``turns.TurnDetector``
report) or more (``bridges``). A pause standing still keeps ending the bout after
``max_break_s``; no gap longer than 3 s is bridged. Both values are the published ones,
not tuned. The verdict waits for the IC after the gap: a confirmed chain whose newest IC
is ``max_break_s`` old is closed once no IC can bridge the gap any more (at the next IC,
at most ``turn_break_s`` after its newest, so a bout summary comes up to 0.8 s later than
with the break alone), as of ``max_break_s`` (``ClosedBout.closed_after``). Step verdicts
do not wait for it: they fall at their own time, as before, and one that falls after the
break (a slow chain's: ``2 T`` > 2.2 s) drops its IC, as the close at the break did.

State: the chain's ICs not yet released (all of them before it is confirmed), the held ICs,
the heading at the chain's newest IC,
and for a confirmed chain its first and last step and the histogram of its IC intervals
(their median decides what is off-rhythm, exactly, however long the bout), so the state
does not grow with the bout.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from justwalk.gait.lr import LEFT, RIGHT


@dataclass
class BoutState:
    """Per-stream state of ``BoutAssembler``."""

    chain: list[list[Any]] = field(default_factory=list)
    """ICs of the open chain not released as steps, as [sample, side]: all of them before
    the chain is confirmed, then the newest (the stopping-step candidate)."""
    confirmed: bool = False
    next_bout: int = 0
    held: list[list[Any]] = field(default_factory=list)
    """ICs of a confirmed chain held back as possible trailing edge, as [sample, side]."""
    n_released: int = 0
    """How many ICs of the chain have been released as steps."""
    first: int = -1
    """The chain's first step (-1: none released)."""
    last: int = -1
    """The chain's last step released."""
    intervals: dict[int, int] = field(default_factory=dict)
    """Confirmed chain: how often each interval (samples) between consecutive ICs occurs."""
    last_seen: int | None = None
    """The newest IC of the open chain, also if it was decided not to be a step."""
    heading_deg: float = 0.0
    """The trunk's heading (integrated yaw rate) at ``last_seen``."""
    median: float | None = field(default=None, init=False, repr=False, compare=False)
    """Cache of ``median_interval`` (None: to compute); not part of the state's value."""
    keys: list[int] | None = field(default=None, init=False, repr=False, compare=False)
    """Cache of ``sorted(intervals)`` (None: to compute); not part of the state's value."""
    due: tuple[float, bool, float] | None = field(default=None, init=False, repr=False,
                                                  compare=False)
    """Cache: (sample rate, headings given, when the next timed decision falls due) as the
    last ``BoutAssembler.process`` left the state (None: unknown); not part of its value."""

    @property
    def is_open(self) -> bool:
        """Whether a chain is open."""
        return bool(self.chain or self.held or self.n_released)

    def median_interval(self) -> float:
        """Median of the confirmed chain's IC intervals (as ``numpy.median``)."""
        if self.median is None:
            self.median = self._median_interval()
        return self.median

    def _median_interval(self) -> float:
        n = sum(self.intervals.values())
        if not n:
            return float("nan")
        if self.keys is None:
            self.keys = sorted(self.intervals)
        below, lo, hi = 0, None, None
        for v in self.keys:
            below += self.intervals[v]
            if lo is None and below > (n - 1) // 2:
                lo = v
            if below > n // 2:
                hi = v
                break
        assert lo is not None and hi is not None
        return float(lo) if n % 2 else (lo + hi) / 2

    def _count(self, a: int, b: int, k: int) -> None:
        d = b - a
        self.median = None
        old = self.intervals.get(d, 0)
        c = old + k
        if c:
            self.intervals[d] = c
            if not old and self.keys is not None:
                bisect.insort(self.keys, d)
        else:
            del self.intervals[d]
            if self.keys is not None:
                self.keys.remove(d)

    def pack(self) -> list[Any]:
        """Msgpack-ready form: ICs as samples (delta-coded from the first) and side bits."""
        items = [*self.chain, *self.held]
        base = items[0][0] if items else 0
        sides = 0
        for k, c in enumerate(items):
            sides |= (c[1] == RIGHT) << k
        return [base, [b - a for a, b in itertools.pairwise([base, *(c[0] for c in items)])],
                sides.to_bytes((len(items) + 7) // 8, "little"), len(self.chain),
                int(self.confirmed), self.next_bout, self.n_released, self.first, self.last,
                [x for kv in sorted(self.intervals.items()) for x in kv],
                -1 if self.last_seen is None else self.last_seen, self.heading_deg]

    @classmethod
    def unpack(cls, obj: list[Any]) -> BoutState:
        """Inverse of ``pack``."""
        (base, deltas, side_bits, n_chain, confirmed, next_bout, n_released, first, last,
         intervals, last_seen, heading_deg) = obj
        ics = list(itertools.accumulate(deltas, initial=base))[1:]
        bits = int.from_bytes(side_bits, "little")
        items = [[ic, RIGHT if bits >> k & 1 else LEFT] for k, ic in enumerate(ics)]
        return cls(chain=items[:n_chain], confirmed=bool(confirmed), next_bout=next_bout,
                   held=items[n_chain:], n_released=n_released, first=first, last=last,
                   intervals=dict(zip(intervals[::2], intervals[1::2], strict=True)),
                   last_seen=None if last_seen < 0 else last_seen,
                   heading_deg=float(heading_deg))


class ClosedBout(NamedTuple):
    """A walking bout closed.

    Its index, first and last step (samples), how many steps, the chain's newest IC (also
    if it was no step), and the sample index after which it was closed (infinite: at the
    end of the data).
    """

    bout_index: int
    start: int
    end: int
    n_ics: int
    last_seen: int
    closed_after: float


@dataclass(frozen=True, slots=True)
class AssemblyOutput:
    """Steps released (sample, side, bout index), in sample order, and bouts closed.

    ``stops``: the samples of the steps that are stopping steps, released as steps but no
    part of their bout (``BoutAssembler``'s ``release_stop``).
    """

    steps: list[tuple[int, str, int]]
    closed: list[ClosedBout]
    stops: set[int] = field(default_factory=set)


class BoutAssembler:
    """Groups labelled ICs into walking bouts; see the module docstring."""

    def __init__(self, *, max_break_s: float = 2.2, min_ics: int = 4,
                 min_bout_ics: int = 6, edge_factor: float | None = 2.0,
                 max_hold_s: float = 1.8, drop_last_ics: int = 1,
                 lead_factor: float | None = None, min_early_ics: int = 3,
                 hold_slack_steps: float | None = 1.0, break_steps: float | None = None,
                 max_step_s: float = 1.5, max_break_cap_s: float = 3.0,
                 lead_rest: bool = True, max_hold_cap_s: float = 3.05,
                 release_stop: bool = True, turn_break_s: float | None = 3.0,
                 turn_min_deg: float = 45.0) -> None:
        self.max_break_s = max_break_s
        self.min_ics = min_ics
        self.min_bout_ics = min_bout_ics
        self.edge_factor = edge_factor
        self.max_hold_s = max_hold_s
        self.drop_last_ics = drop_last_ics
        self.lead_factor = lead_factor if lead_factor is not None else edge_factor
        self.min_early_ics = min_early_ics
        self.hold_slack_steps = hold_slack_steps
        self.break_steps = break_steps
        self.max_step_s = max_step_s
        self.max_break_cap_s = max_break_cap_s
        self.lead_rest = lead_rest
        self.max_hold_cap_s = max_hold_cap_s
        self.release_stop = release_stop
        self.turn_break_s = turn_break_s
        self.turn_min_deg = turn_min_deg

    @property
    def hold_cap_s(self) -> float:
        """The longest a step verdict can wait (seconds after the IC)."""
        if self.hold_slack_steps is None:
            return self.max_hold_s
        need = max(self.min_early_ics - 1, 1) + self.hold_slack_steps
        return max(self.max_hold_s, min(need * self.max_step_s, self.max_hold_cap_s))

    @property
    def break_cap_s(self) -> float:
        """The longest a chain stays open after its newest IC (seconds)."""
        cap = self.max_break_s
        if self.break_steps is not None:
            cap = max(cap, self.max_break_cap_s)
        if self.turn_break_s is not None:
            cap = max(cap, self.turn_break_s)
        return cap

    def step_samples(self, state: BoutState) -> float:
        """The open chain's step time (samples): the median IC interval; NaN if unknown.

        Confirmed: the median of the chain's intervals (``BoutState.median_interval``);
        unconfirmed: the median of its ICs' intervals (NaN below 2 ICs).
        """
        if state.confirmed:
            return state.median_interval()
        chain = state.chain
        if len(chain) < 2:
            return math.nan
        return _median_of([b[0] - a[0] for a, b in itertools.pairwise(chain)])

    def hold_samples(self, state: BoutState, fs: float, steps_needed: float) -> float:
        """How long a verdict that waits for ``steps_needed`` more ICs waits (samples).

        ``max_hold_s``, or, for a chain that walks slower, ``steps_needed`` +
        ``hold_slack_steps`` of its own step times (at most ``max_step_s`` each), at most
        ``max_hold_cap_s``.
        """
        hold = self.max_hold_s * fs
        if self.hold_slack_steps is None:
            return hold
        t = self.step_samples(state)
        if not t > 0:
            return hold
        t = min(t, self.max_step_s * fs)
        return max(hold, min((steps_needed + self.hold_slack_steps) * t,
                             self.max_hold_cap_s * fs))

    def break_samples(self, state: BoutState, fs: float) -> float:
        """Longest gap (samples) after the chain's newest IC before it closes.

        ``max_break_s``, or ``break_steps`` of the chain's step time if longer, at most
        ``max_break_cap_s`` (Mobilise-D's maximum break, 3 s).
        """
        gap = self.max_break_s * fs
        if self.break_steps is None:
            return gap
        t = self.step_samples(state)
        if not t > 0:
            return gap
        return max(gap, min(self.break_steps * t, self.max_break_cap_s * fs))

    def closes_after(self, state: BoutState, fs: float) -> float:
        """Sample index after which the open chain closes if no IC comes (inf: none open)."""
        if state.last_seen is None or not state.is_open:
            return math.inf
        return state.last_seen + self.break_samples(state, fs)

    def bridges(self, state: BoutState, ic: int, heading_deg: float, fs: float) -> bool:
        """Whether IC ``ic`` (trunk heading ``heading_deg``) goes on with the chain across a turn.

        The chain is confirmed, the IC's gap from its newest IC is longer than
        ``break_samples`` but at most ``turn_break_s``, and the heading changed by
        ``turn_min_deg`` or more.
        """
        if self.turn_break_s is None or not state.confirmed or state.last_seen is None:
            return False
        gap = ic - state.last_seen
        if not self.break_samples(state, fs) < gap <= self.turn_break_s * fs:
            return False
        return abs(heading_deg - state.heading_deg) >= self.turn_min_deg

    def _bridgeable(self, state: BoutState) -> bool:
        """Whether an IC may bridge the open chain's next gap (``bridges``)."""
        return (self.turn_break_s is not None and state.confirmed
                and state.last_seen is not None)

    def initial_state(self) -> BoutState:
        """State before any data."""
        return BoutState()

    def decided_until(self, state: BoutState, final_until: int) -> int:
        """Sample index before which the set of released steps will not change."""
        if state.chain:  # an unconfirmed chain's first IC, or the stopping-step candidate
            return min(final_until, int(state.chain[0][0]))
        if state.held:
            return min(final_until, int(state.held[0][0]))
        return final_until

    def _irregular(self, d: float, med: float, factor: float | None = None) -> bool:
        f = self.edge_factor if factor is None else factor
        return f is not None and (d > f * med or d * f < med)

    def process(self, state: BoutState, ics: list[tuple[int, str]], final_until: int,
                sample_rate_hz: float, transfer: Collection[int] = (),
                headings_deg: Sequence[float] | None = None) -> AssemblyOutput:
        """Add ICs (sorted); ``final_until``: no later IC will lie before this index.

        ICs in ``transfer`` follow a postural transition (``transfers``): they cannot start
        or grow an unconfirmed chain, which is discarded; a confirmed bout keeps them.
        ``headings_deg``: the trunk's heading (integrated yaw rate, degrees) at each IC
        (none: no gap is bridged as a turn, and a chain closes without waiting to know
        whether one is; a stream gives them always or never). Timed decisions
        (``_advance``) run in the order they fall due, before each IC and up to
        ``final_until``, so the output does not depend on how the stream is chunked.
        """
        steps: list[tuple[int, str, int]] = []
        closed: list[ClosedBout] = []
        stops: set[int] = set()
        wait = headings_deg is not None
        if not ics and self.nothing_due(state, final_until, sample_rate_hz, headings=wait):
            return AssemblyOutput(steps, closed, stops)
        known = state.due  # valid until the state changes: up to the first IC's decisions
        state.due = None
        for k, (ic, side) in enumerate(ics):
            ic = int(ic)
            heading = None if headings_deg is None else float(headings_deg[k])
            self._advance(state, steps, closed, ic, sample_rate_hz, stops, ic_heading=heading,
                          known=known)
            known = None
            state.heading_deg = 0.0 if heading is None else heading
            if not state.confirmed and ic in transfer:
                state.chain = []
                state.last_seen = None
                continue
            if state.confirmed:
                newest = state.chain[-1][0] if state.chain else state.last
                prev = state.last_seen if state.last_seen is not None else newest
                state.last_seen = ic
                if self._irregular(ic - prev, state.median_interval()):
                    state.held.append([ic, side])
                else:
                    for c in [*state.held, [ic, side]]:
                        state._count(newest, c[0], 1)
                        newest = c[0]
                        state.chain.append(c)
                    state.held = []
                    self._release(state, steps)
                continue
            state.chain.append([ic, side])
            state.last_seen = ic
            if len(state.chain) >= self.min_ics:
                self._trim_leading(state)
            if len(state.chain) >= self.min_ics:
                self._confirm(state, steps)
        due = self._advance(state, steps, closed, final_until, sample_rate_hz, stops, wait=wait)
        state.due = (sample_rate_hz, wait, due)
        return AssemblyOutput(steps, closed, stops)

    def nothing_due(self, state: BoutState, final_until: int, sample_rate_hz: float, *,
                    headings: bool = True) -> bool:
        """Whether ``process`` without ICs up to ``final_until`` would change nothing.

        True when the last ``process`` (given headings or not alike) left the state with
        its next timed decision due at or after ``final_until``: the state has not changed
        since, so neither has that deadline.
        """
        due = state.due
        return (due is not None and due[0] == sample_rate_hz and due[1] == headings
                and not final_until > due[2])

    def _confirm(self, state: BoutState, steps: list[tuple[int, str, int]]) -> None:
        state.confirmed = True
        state.intervals = {}
        state.median = state.keys = None
        for a, b in itertools.pairwise(state.chain):
            state._count(a[0], b[0], 1)
        self._release(state, steps)

    def _advance(self, state: BoutState, steps: list[tuple[int, str, int]],
                 closed: list[ClosedBout], now: int, fs: float, stops: set[int], *,
                 ic_heading: float | None = None, wait: bool = False,
                 known: tuple[float, bool, float] | None = None) -> float:
        """Take every timed decision due before ``now``, earliest first; when the next falls due.

        - an unconfirmed chain whose first IC is ``max_hold_s`` old is confirmed if it holds
          ``min_early_ics`` ICs, else that IC is no step;
        - a held (off-rhythm) IC that is ``max_hold_s`` old is no step;
        - the unreleased newest IC of a confirmed chain (the stopping-step candidate) that
          is ``max_hold_s`` old is a step if off-rhythm ICs followed it (the walk went on
          irregularly), else no step (the walk stopped there);
        - a chain whose newest IC is ``max_break_s`` old is closed (as of then). When
          headings are known (an IC at ``now`` with heading ``ic_heading``, or ``wait``) a
          confirmed chain is closed only when no IC can bridge its gap across a turn any
          more (``bridges``): ``turn_break_s`` after its newest IC, or, if the IC at
          ``now`` comes before that, after every decision due before it, unless it
          bridges the gap. The other decisions run at their own time meanwhile, so the
          order of all decisions does not depend on how the data come; one due after the
          break drops its IC, as the close at the break did before gaps were bridged.

        ``known``: ``BoutState.due`` as the last call left it, if the state has not changed
        since (no decision is due before it).
        """
        waits = ic_heading is not None or wait
        if known is not None and known[0] == fs and known[1] == waits and not now > known[2]:
            when = known[2]  # nothing due before ``now``: the loop would stop at once
        else:
            when = self._decide(state, steps, closed, now, fs, stops, waits)
        if (ic_heading is not None and self._bridgeable(state)
                and now > self.closes_after(state, fs)
                and not self.bridges(state, now, ic_heading, fs)):
            self._close(state, closed, self.closes_after(state, fs))
            return -math.inf  # the state changed after ``when`` was found
        return when

    def _decide(self, state: BoutState, steps: list[tuple[int, str, int]],
                closed: list[ClosedBout], now: int, fs: float, stops: set[int],
                waits: bool) -> float:
        """``_advance``'s timed decisions before ``now``; when the next falls due."""
        while True:
            when, kind = float("inf"), -1
            if state.chain and not state.confirmed:
                early = self.hold_samples(state, fs, self.min_early_ics - 1)
                when, kind = state.chain[0][0] + early, 0
            if state.confirmed and (state.held or state.chain):
                hold = self.hold_samples(state, fs, 1)
                if state.held and state.held[0][0] + hold < when:
                    when, kind = state.held[0][0] + hold, 1
                if state.chain and state.chain[0][0] + hold < when:
                    when, kind = state.chain[0][0] + hold, 2
            closes = self.closes_after(state, fs)
            if waits and self._bridgeable(state):  # no IC bridges the gap after this
                closes = max(closes, state.last_seen + self.turn_break_s * fs)  # type: ignore[operator]
            if closes < when:
                when, kind = closes, 3
            if not now > when:  # also none due (kind < 0, when infinite)
                break
            if kind in (1, 2) and waits and when > self.closes_after(state, fs):
                # due after the break: as when the chain closed then, the IC is no step
                self._drop_first(state, held=kind == 1)
                continue
            if kind == 0:
                if self.lead_rest and self._trim_leading(state, rest=True):
                    continue  # a leading IC was off the rhythm of the rest: a new deadline
                if len(state.chain) >= self.min_early_ics:
                    self._confirm(state, steps)
                else:
                    state.chain.pop(0)
            elif kind == 1:
                state.held.pop(0)
            elif kind == 2 and state.held:  # steps followed it: it was no stopping step
                self._release_one(state, steps)
            elif kind == 2:  # the walk stopped: the candidate is no step of the bout
                stop = state.chain[0]
                if self.release_stop and state.n_released and len(state.chain) == 1:
                    steps.append((int(stop[0]), str(stop[1]), state.next_bout))
                    stops.add(int(stop[0]))
                self._drop_first(state, held=False)
            else:
                self._close(state, closed, self.closes_after(state, fs))
        return when

    def _drop_first(self, state: BoutState, *, held: bool) -> None:
        """Drop the oldest held IC, or the confirmed chain's unreleased oldest IC."""
        if held:
            state.held.pop(0)
            return
        gone = state.chain.pop(0)[0]
        after = state.chain[0][0] if state.chain else None
        if state.n_released:
            state._count(state.last, gone, -1)
        if after is not None:
            state._count(gone, after, -1)
            if state.n_released:
                state._count(state.last, after, 1)

    def _trim_leading(self, state: BoutState, rest: bool = False) -> bool:
        """Drop leading ICs off the chain's rhythm; whether any was dropped.

        The first interval is compared with the median of all the chain's intervals, or
        with ``rest``, of the intervals after it (with 3 ICs the median of all could never
        be twice the first).
        """
        dropped = False
        while len(state.chain) >= 3:
            d = [b[0] - a[0] for a, b in itertools.pairwise(state.chain)]
            ref = _median_of(d[1:] if rest else d)
            if not self._irregular(float(d[0]), ref, self.lead_factor):
                return dropped
            state.chain.pop(0)
            dropped = True
        return dropped

    def _release_one(self, state: BoutState, steps: list[tuple[int, str, int]]) -> None:
        c = state.chain.pop(0)
        steps.append((int(c[0]), str(c[1]), state.next_bout))
        if not state.n_released:
            state.first = int(c[0])
        state.last = int(c[0])
        state.n_released += 1

    def _release(self, state: BoutState, steps: list[tuple[int, str, int]]) -> None:
        """Release the chain's ICs except its newest ``drop_last_ics`` (the stopping step)."""
        if not state.confirmed:
            return
        while len(state.chain) > self.drop_last_ics:
            self._release_one(state, steps)

    def flush(self, state: BoutState) -> AssemblyOutput:
        """Close the open chain (end of data)."""
        closed: list[ClosedBout] = []
        state.due = None
        if state.chain or state.n_released:
            self._close(state, closed, float("inf"))
        return AssemblyOutput([], closed)

    def _close(self, state: BoutState, closed: list[ClosedBout], when: float) -> None:
        if state.confirmed:
            if state.n_released >= self.min_bout_ics:
                last = state.last_seen if state.last_seen is not None else state.last
                closed.append(ClosedBout(state.next_bout, state.first, state.last,
                                         state.n_released, int(last), when))
            state.next_bout += 1
        state.chain = []
        state.held = []
        state.n_released = 0
        state.first = state.last = -1
        state.intervals = {}
        state.median = state.keys = None
        state.last_seen = None
        state.confirmed = False


def _median_of(values: list[int]) -> float:
    """``numpy.median`` of a few integers.

    For an even count, the mean of the middle two: their sum is exact, so the result is
    the same float.
    """
    v = sorted(values)
    h = len(v) // 2
    return float(v[h]) if len(v) % 2 else (v[h - 1] + v[h]) / 2
