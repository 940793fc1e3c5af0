"""The search's sequential test: judging a first block of pairs and patching the rest only for trials whose verdict
is not settled gives the very tags, and the very verdict of every trial, that judging every pair gives."""

import zlib

import numpy as np
import pytest

from arithlens.analysis import subtasks as S
from arithlens.analysis.search import Rule, Trial, search, stage_ends
from arithlens.analysis.nodes import Node
from test_search import MIX3, mix3_nodes


class ScatteredOracle:
    """A fake patcher whose successes fall on scattered rows: `rates[node names]` = (strong share, weak share) of
    the rows, each set's rows drawn from its own seeded permutation (so a first block of pairs sees a random part
    of them); other sets leave the clean answer. The last `invalid` rows are answered wrong unpatched. `rows`
    cuts it to a block of pairs, as `EngineRunner.rows` does."""

    def __init__(self, pairs, rates, invalid=7, rows=slice(None)):
        self.pairs, self.rates, self.block = pairs, rates, rows
        clean = pairs.clean_tokens.copy()
        clean[len(pairs) - invalid:, -1] += 1  # a wrong last digit: not judged
        self.clean_pred, self.store_pred = clean[rows], pairs.store_tokens[rows]
        self.calls = []

    def rows(self, rows):
        out = ScatteredOracle(self.pairs, self.rates, len(self.pairs) - len(self.clean_pred), rows)
        out.calls = self.calls
        return out

    def patched(self, nodes):
        names = frozenset(n.name for n in nodes)
        self.calls.append((names, self.block))
        out = self.pairs.clean_tokens.copy()
        strong_share, weak_share = self.rates.get((self.pairs.tag, names), (0.0, 0.0))
        order = np.random.default_rng(sorted(zlib.crc32(n.encode()) for n in names)).permutation(len(out))
        strong = order < strong_share * len(out)
        weak = (order >= strong_share * len(out)) & (order < (strong_share + weak_share) * len(out))
        out[strong] = self.pairs.expected_tokens[strong]
        wrong = self.pairs.expected_tokens.copy()
        for i, j in zip(*np.nonzero(self.pairs.impact)):
            wrong[i, j] = next(d for d in range(10) if d not in (wrong[i, j], out[i, j]))
        out[weak] = wrong[weak]
        return out[self.block]


def _run(rates, sequential, **kwargs):
    oracles = []

    def runner(pairs):
        oracles.append(ScatteredOracle(pairs, rates))
        return oracles[-1]

    result = search(mix3_nodes(), MIX3, runner, tasks=(S.SC, S.SA), n_pairs=120, sequential=sequential, **kwargs)
    return result, sum(_rows(block, len(o.pairs)) for o in oracles for _, block in o.calls)


def _rows(block: slice, n: int) -> int:
    return len(range(n)[block])


def _rates(seed):
    """Shares near the rule's bar (60% of 100 pairs) and far from it, strong and weak, alone and in groups."""
    rng = np.random.default_rng(seed)
    sets = [{"P10L0H1"}, {"P10L0H3"}, {"P10L1H0"}, {"P10L1MLP"}, {"P10L0H0", "P10L0H2"}, {"P10L0H1", "P10L0H3"},
            {"P10L0H0", "P10L0H2", "P10L0H1"}, {"P10L0H0"}, {"P10L0H2"}]
    out = {}
    for tag in ("A0.SC", "A1.SC", "A0.SA", "A1.SA"):
        for names in sets:
            strong = float(rng.choice([0.0, 0.03, 0.1, 0.45, 0.55, 0.6, 0.62, 0.66, 0.8, 1.0]))
            weak = float(rng.choice([0.0, 0.05, 0.6, 0.7])) * (1 - strong)
            out[(tag, frozenset(names))] = (strong, weak)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_sequential_test_gives_every_verdict_the_full_count_gives(seed):
    rates = _rates(seed)
    staged, staged_rows = _run(rates, True)
    full, full_rows = _run(rates, False)
    assert staged.algo_tags() == full.algo_tags()
    assert [c.tagged for c in staged.cells] == [c.tagged for c in full.cells]
    assert len(staged.trials) == len(full.trials)
    stopped = 0
    for s, f in zip(staged.trials, full.trials):
        assert (s.name, s.tag, s.tagged) == (f.name, f.tag, f.tagged)
        assert s.pairs_valid == f.valid == f.pairs_valid
        assert s.passes(Rule(), "strong") == f.passes(Rule(), "strong")
        if not f.passes(Rule(), "strong"):  # the weak verdict counts only then
            assert s.passes(Rule(), "weak") == f.passes(Rule(), "weak")
        if s.valid < s.pairs_valid:  # stopped early: its counts are a prefix of the full ones
            stopped += 1
            assert s.strong <= f.strong <= s.strong + s.pairs_valid - s.valid
            assert "stopped_early" in s.to_dict() and s.to_dict()["strong"]["n"] == s.valid
        else:
            assert (s.strong, s.weak, s.without) == (f.strong, f.weak, f.without)
    assert stopped > 0 and staged_rows < full_rows  # it does save patched rows


def test_a_stopped_trial_is_settled_both_ways_and_an_open_one_is_not():
    # 100 valid pairs need 60 hits; after 46 judged, 54 are left.
    assert stage_ends(np.ones(100, bool), Rule(), slack=5) == [46, 100]
    assert Trial((Node(3, 0, False, 0),), "SC", 0, "A0.SC", 46, 5, 0, pairs_valid=100).settled(Rule(), "strong")
    assert not Trial((Node(3, 0, False, 0),), "SC", 0, "A0.SC", 46, 6, 0, pairs_valid=100).settled(Rule(), "strong")
    done = Trial((Node(3, 0, False, 0),), "SC", 0, "A0.SC", 70, 60, 0, pairs_valid=100)
    assert done.settled(Rule(), "strong") and done.passes(Rule(), "strong")
    # A group: its own 60 hits pass, but a member left out could still come within its interval.
    group = Trial((Node(3, 0, False, 0), Node(3, 0, False, 1)), "SC", 0, "A0.SC", 70, 60, 0,
                  without=((30, 0), (0, 0)), pairs_valid=100)
    assert not group.settled(Rule(), "strong")
    assert Trial(group.nodes, "SC", 0, "A0.SC", 100, 60, 0, without=((30, 0), (0, 0))).passes(Rule(), "strong")
    # Invalid rows do not count towards a stage: its end falls after the 46th valid pair.
    valid = np.ones(100, bool)
    valid[::10] = False  # 90 valid: 90 - 55 + 1 + 5 = 41 valid pairs, the 41st at row 45
    assert stage_ends(valid, Rule(), slack=5) == [46, 100]
    assert stage_ends(np.ones(5, bool), Rule()) == [5]  # nothing to save on 5 pairs
