"""Sequence data with gold trees, generated in-repo and seeded, plus a PTB-format reader.

- `pcfg_corpus`: an English-like probabilistic context-free grammar with number agreement
  across subject and object relative clauses. The grammar is unambiguous (every relative
  clause opens with "that" and attaches to the noun before it; verbs and nouns are lexically
  unambiguous), so a sentence's probability is its derivation's, known exactly.
- `english_corpus`: a second, English-like grammar that mixes right-branching clauses (verb
  complements, objects, prepositional phrases) with left-leaning and nested constituents
  (possessor chains, modified subjects, relative clauses) and flat Penn-style noun groups, so
  that no trivial tree (right-, left-branching, balanced, random) scores near a real parser.
- `logical_inference`: Bowman et al. (2015): formulas over six variables with and/or/not; the
  relation of a pair (one of seven) is computed from their truth tables.
- `listops`: shallow ListOps (MIN, MAX, MED, SM over digits).
- `read_text_corpus`: train.txt / valid.txt / test.txt (PTB, WikiText), vocabulary from train.

A tree is a nested tuple of token positions; `spans` gives its constituents.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.errors import SpecError

Tree = Any  # int (a token position) or tuple of trees


@dataclass(frozen=True)
class Sentence:
    tokens: tuple[str, ...]
    tree: Tree | None = None
    logprob: float | None = None


def spans(tree: Tree) -> set[tuple[int, int]]:
    """Constituents as (first, last) token positions, single tokens included."""
    out: set[tuple[int, int]] = set()

    def walk(t) -> tuple[int, int]:
        if isinstance(t, int):
            out.add((t, t))
            return t, t
        bounds = [walk(c) for c in t]
        span = (bounds[0][0], bounds[-1][1])
        out.add(span)
        return span

    walk(tree)
    return out


# ---------------------------------------------------------------- PCFG with agreement
LEXICON = {
    ("Det", "sg"): ["the", "a", "every", "this"],
    ("Det", "pl"): ["the", "some", "many", "these"],
    ("N", "sg"): ["dog", "cat", "bird", "child", "teacher", "farmer"],
    ("N", "pl"): ["dogs", "cats", "birds", "children", "teachers", "farmers"],
    ("Vi", "sg"): ["sleeps", "runs", "laughs", "sings"],
    ("Vi", "pl"): ["sleep", "run", "laugh", "sing"],
    ("Vt", "sg"): ["chases", "sees", "likes", "follows"],
    ("Vt", "pl"): ["chase", "see", "like", "follow"],
}
P_RC = 0.3  # NP -> Det N RC
P_SUBJ_RC = 0.5  # RC -> that VP (else: that NP Vt)
P_TRANSITIVE = 0.5  # VP -> Vt NP (else: Vi)


class _Derivation:
    def __init__(self, rng: random.Random) -> None:
        self.rng, self.logprob = rng, 0.0
        self.tokens: list[str] = []

    def choose(self, p: float) -> bool:
        yes = self.rng.random() < p
        self.logprob += math.log(p if yes else 1 - p)
        return yes

    def word(self, cat: str, num: str) -> int:
        words = LEXICON[(cat, num)]
        self.tokens.append(self.rng.choice(words))
        self.logprob += math.log(1 / len(words))
        return len(self.tokens) - 1

    def number(self) -> str:
        return "sg" if self.choose(0.5) else "pl"

    def np(self, num: str, depth: int) -> Tree:
        det, noun = self.word("Det", num), self.word("N", num)
        # Below depth 4 an NP takes no relative clause (a depth-indexed rule of probability 1).
        if depth < 4 and self.choose(P_RC):
            return ((det, noun), self.rc(num, depth + 1))
        return (det, noun)

    def rc(self, num: str, depth: int) -> Tree:
        self.tokens.append("that")
        that = len(self.tokens) - 1
        if self.choose(P_SUBJ_RC):
            return (that, self.vp(num, depth))
        inner = self.number()
        return (that, (self.np(inner, depth), self.word("Vt", inner)))

    def vp(self, num: str, depth: int) -> Tree:
        if self.choose(P_TRANSITIVE):
            return (self.word("Vt", num), self.np(self.number(), depth))
        return self.word("Vi", num)


def pcfg_sentence(rng: random.Random) -> Sentence:
    d = _Derivation(rng)
    num = d.number()
    subject = d.np(num, 0)
    tree = (subject, d.vp(num, 0))
    return Sentence(tuple(d.tokens), tree, d.logprob)


def pcfg_corpus(n: int, seed: int) -> list[Sentence]:
    rng = random.Random(seed)
    return [pcfg_sentence(rng) for _ in range(n)]


# ---------------------------------------------------------------- an English-like PCFG with mixed branching
ENGLISH_LEXICON = {
    **LEXICON,
    ("Pro", "sg"): ["he", "she"],
    ("Pro", "pl"): ["they"],
    ("Adj", ""): ["old", "small", "happy", "clever"],
    ("Pnp", ""): ["near", "with", "behind"],  # prepositions of noun-modifying PPs
    ("Pvp", ""): ["after", "before"],  # prepositions of verb-modifying PPs
    ("Vs", "sg"): ["thinks", "says", "knows"],
    ("Vs", "pl"): ["think", "say", "know"],
}
ENGLISH_WORDS = ("that", "'s")
ENGLISH_P = {
    "pronoun": 0.25,  # a subject is a pronoun
    "adjective": 0.3,  # Det (Adj) N
    "possessive": 0.15,  # an NP opens with a possessor: ((Det N 's) N)
    "possessive_again": 0.2,  # the possessor chain goes on: (((Det N 's) N 's) N)
    "np_pp": 0.25,  # NP -> NP PP (an object's; a subject's times SUBJECT_MODIFIERS)
    "np_rc": 0.15,  # NP -> NP RC
    "subject_rc": 0.5,  # RC -> that VP (else: that NP Vt)
    "complement": 0.25,  # VP -> Vs that S
    "transitive": 0.5,  # VP -> Vt NP (else: Vi)
    "vp_pp": 0.3,  # VP -> Vt NP PP | Vi PP
}
SUBJECT_MODIFIERS = 0.4  # subjects are short in English: their PP and RC chances are scaled by this
MAX_DEPTH = 3  # clauses nest at most this deep


class _EnglishDerivation(_Derivation):
    """S -> NP VP with number agreement. Right-branching clauses (V that S, V NP, P NP) mixed with
    left-leaning constituents (possessor chains, NP PP, NP RC, subject NPs). Flat (n-ary) nodes
    where the Penn Treebank has them (Det Adj N; V NP PP). Unambiguous: a PP's NP and a relative
    clause's subject take no modifiers, a relative clause's VP and a Vs VP take no PP, and the two
    kinds of PP have their own prepositions, so a sentence's probability is its derivation's."""

    def word(self, cat: str, num: str = "") -> int:
        words = ENGLISH_LEXICON[(cat, num)]
        self.tokens.append(self.rng.choice(words))
        self.logprob += math.log(1 / len(words))
        return len(self.tokens) - 1

    def literal(self, word: str) -> int:
        self.tokens.append(word)
        return len(self.tokens) - 1

    def nominal(self, num: str) -> list[int]:
        """(Adj) N: the words of a flat noun group."""
        adjective = [self.word("Adj")] if self.choose(ENGLISH_P["adjective"]) else []
        return [*adjective, self.word("N", num)]

    def simple_np(self, num: str) -> Tree:
        if self.choose(ENGLISH_P["possessive"]):
            owner = self.number()
            node: Tree = (self.word("Det", owner), *self.nominal(owner), self.literal("'s"))
            while self.choose(ENGLISH_P["possessive_again"]):
                owner = self.number()
                node = (node, *self.nominal(owner), self.literal("'s"))
            return (node, *self.nominal(num))
        return (self.word("Det", num), *self.nominal(num))

    def english_np(self, num: str, depth: int, subject: bool = False) -> Tree:
        if subject and self.choose(ENGLISH_P["pronoun"]):
            return self.word("Pro", num)
        node = self.simple_np(num)
        scale = SUBJECT_MODIFIERS if subject else 1.0
        if self.choose(ENGLISH_P["np_pp"] * scale):
            node = (node, (self.word("Pnp"), self.simple_np(self.number())))
        if depth < MAX_DEPTH and self.choose(ENGLISH_P["np_rc"] * scale):
            node = (node, self.english_rc(num, depth + 1))
        return node

    def english_rc(self, num: str, depth: int) -> Tree:
        that = self.literal("that")
        if self.choose(ENGLISH_P["subject_rc"]):
            return (that, self.english_vp(num, depth, clause=False))
        inner = self.number()
        return (that, (self.simple_np(inner), self.word("Vt", inner)))

    def english_vp(self, num: str, depth: int, clause: bool = True) -> Tree:
        """A clause's VP (clause=True) may take a complement clause or a PP; a relative clause's not."""
        if clause and depth < MAX_DEPTH and self.choose(ENGLISH_P["complement"]):
            verb = self.word("Vs", num)
            return (verb, (self.literal("that"), self.english_clause(depth + 1)))
        if self.choose(ENGLISH_P["transitive"]):
            node: tuple = (self.word("Vt", num), self.english_np(self.number(), depth))
        else:
            node = (self.word("Vi", num),)
        if clause and self.choose(ENGLISH_P["vp_pp"]):
            node = (*node, (self.word("Pvp"), self.simple_np(self.number())))
        return node if len(node) > 1 else node[0]

    def english_clause(self, depth: int) -> Tree:
        num = self.number()
        return (self.english_np(num, depth, subject=True), self.english_vp(num, depth))


def english_sentence(rng: random.Random) -> Sentence:
    d = _EnglishDerivation(rng)
    tree = d.english_clause(0)
    return Sentence(tuple(d.tokens), tree, d.logprob)


def english_corpus(n: int, seed: int) -> list[Sentence]:
    rng = random.Random(seed)
    return [english_sentence(rng) for _ in range(n)]


# ---------------------------------------------------------------- logical inference
VARIABLES = "abcdef"
RELATIONS = (
    "=",
    "^",
    "|",
    "v",
    "<",
    ">",
    "#",
)  # equivalence, negation, alternation, cover, entailment x2, independence
_ALL = (1 << 64) - 1
_VAR_SETS = {v: sum(1 << a for a in range(64) if (a >> i) & 1) for i, v in enumerate(VARIABLES)}


def random_formula(rng: random.Random, ops: int) -> Any:
    """A formula with exactly `ops` operators: a variable, ('not', f) or (op, f, g)."""
    if ops == 0:
        return rng.choice(VARIABLES)
    if rng.random() < 1 / 3:
        return ("not", random_formula(rng, ops - 1))
    left = rng.randint(0, ops - 1)
    return (rng.choice(("and", "or")), random_formula(rng, left), random_formula(rng, ops - 1 - left))


def truth_set(formula: Any) -> int:
    """The set of the 64 assignments that satisfy the formula, as a bit mask."""
    if isinstance(formula, str):
        return _VAR_SETS[formula]
    if formula[0] == "not":
        return _ALL & ~truth_set(formula[1])
    a, b = truth_set(formula[1]), truth_set(formula[2])
    return a & b if formula[0] == "and" else a | b


def relation(a: int, b: int) -> str:
    if a == b:
        return "="
    disjoint, covering = (a & b) == 0, (a | b) == _ALL
    if disjoint and covering:
        return "^"
    if a & ~b == 0:
        return "<"
    if b & ~a == 0:
        return ">"
    if disjoint:
        return "|"
    if covering:
        return "v"
    return "#"


def formula_tokens(formula: Any) -> tuple[tuple[str, ...], Tree]:
    tokens: list[str] = []

    def emit(f) -> Tree:
        if isinstance(f, str):
            tokens.append(f)
            return len(tokens) - 1
        tokens.append("(")
        first = len(tokens) - 1
        if f[0] == "not":
            tokens.append("not")
            inner = (len(tokens) - 1, emit(f[1]))
        else:
            left = emit(f[1])
            tokens.append(f[0])
            inner = (left, (len(tokens) - 1, emit(f[2])))
        tokens.append(")")
        return (first, inner, len(tokens) - 1)

    tree = emit(formula)
    return tuple(tokens), tree


@dataclass(frozen=True)
class PairExample:
    left: Sentence
    right: Sentence
    label: str
    ops: int  # operators of the larger formula


def logical_inference(n: int, seed: int, max_ops: int, exact_ops: int | None = None) -> list[PairExample]:
    """Pairs whose larger formula has `exact_ops` operators (or 1..max_ops, uniformly)."""
    rng = random.Random(seed)
    out: list[PairExample] = []
    while len(out) < n:
        k = exact_ops if exact_ops is not None else rng.randint(1, max_ops)
        f1, f2 = random_formula(rng, k), random_formula(rng, rng.randint(0, k))
        if rng.random() < 0.5:
            f1, f2 = f2, f1
        (t1, tree1), (t2, tree2) = formula_tokens(f1), formula_tokens(f2)
        out.append(PairExample(Sentence(t1, tree1), Sentence(t2, tree2), relation(truth_set(f1), truth_set(f2)), k))
    return out


# ---------------------------------------------------------------- ListOps
LISTOPS = ("[MIN", "[MAX", "[MED", "[SM")


def _listop(rng: random.Random, depth: int, tokens: list[str]) -> tuple[int, Tree]:
    op = rng.choice(LISTOPS)
    tokens.append(op)
    first = len(tokens) - 1
    values, children = [], []
    for _ in range(rng.randint(2, 4)):
        if depth < 2 and rng.random() < 0.3:
            value, child = _listop(rng, depth + 1, tokens)
        else:
            value = rng.randint(0, 9)
            tokens.append(str(value))
            child = len(tokens) - 1
        values.append(value)
        children.append(child)
    tokens.append("]")
    if op == "[MIN":
        result = min(values)
    elif op == "[MAX":
        result = max(values)
    elif op == "[MED":
        result = sorted(values)[len(values) // 2]
    else:
        result = sum(values) % 10
    return result, (first, tuple(children), len(tokens) - 1)


def listops(n: int, seed: int) -> list[tuple[Sentence, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tokens: list[str] = []
        value, tree = _listop(rng, 0, tokens)
        out.append((Sentence(tuple(tokens), tree), value))
    return out


# ---------------------------------------------------------------- PTB-format text
def read_text_corpus(folder: str | Path) -> dict[str, list[Sentence]]:
    """train.txt / valid.txt / test.txt, one sentence a line, whitespace-tokenised."""
    folder = Path(folder).expanduser()
    out = {}
    for split, name in (("train", "train.txt"), ("val", "valid.txt"), ("test", "test.txt")):
        path = folder / name
        if not path.is_file():
            raise SpecError(
                f"text corpus: {path} is missing; a PTB-format folder holds train.txt, valid.txt and test.txt"
            )
        out[split] = [Sentence(tuple(line.split())) for line in path.read_text().splitlines() if line.strip()]
    if not out["train"]:
        raise SpecError(f"text corpus: {folder / 'train.txt'} is empty")
    return out
