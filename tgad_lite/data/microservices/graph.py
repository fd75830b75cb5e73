"""The service dependency graph: ``ServiceGraph``, the 8-service shop and random service DAGs.

``ServiceGraph.edge_index`` is ``[2, E]``: row 0 is the caller, row 1 the callee (the caller
depends on the callee). Requests enter at services nobody calls (the entry services).
Neighbour lists are built once per graph (``O(E log E)``), so lookups and the traversals the
simulator needs stay fast at a thousand services.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tgad_lite.data.microservices._checks import as_float, as_int

SHOP_SERVICES: tuple[str, ...] = (
    "Frontend",
    "Auth",
    "Cart",
    "Order",
    "Payment",
    "Inventory",
    "Fraud",
    "Notification",
)
# (caller, callee): the caller depends on the callee.
SHOP_DEPENDENCIES: tuple[tuple[str, str], ...] = (
    ("Frontend", "Auth"),  # every page checks the session
    ("Frontend", "Cart"),  # basket view
    ("Frontend", "Order"),  # checkout
    ("Cart", "Inventory"),  # stock shown next to basket items
    ("Order", "Auth"),  # re-validates the user before charging
    ("Order", "Payment"),  # charge the card
    ("Order", "Inventory"),  # reserve the items
    ("Order", "Notification"),  # order confirmation mail
    ("Payment", "Fraud"),  # score the transaction before charging
    ("Payment", "Notification"),  # payment receipt
)


def _split(values: np.ndarray, keys: np.ndarray, n: int) -> list[np.ndarray]:
    """``values`` (already sorted by ``keys``) cut into one read-only array per key 0..n-1."""
    bounds = np.cumsum(np.bincount(keys, minlength=n))[:-1]
    parts = np.split(values, bounds)
    for p in parts:
        p.flags.writeable = False
    return parts


@dataclass(frozen=True, eq=False)
class ServiceGraph:
    """Services and their call dependencies.

    ``edge_index`` is ``[2, E]`` int64: row 0 the caller, row 1 the callee (caller depends on
    callee). It is stored read-only. Cycles are allowed here (``is_acyclic`` says), but
    ``simulate`` needs a DAG.
    """

    names: list[str]
    edge_index: np.ndarray

    def __post_init__(self) -> None:
        names = [str(n) for n in self.names]
        if not names:
            raise ValueError("a ServiceGraph needs at least one service name")
        if len(set(names)) != len(names):
            dupes = sorted(name for name, count in Counter(names).items() if count > 1)
            raise ValueError(f"service names must be unique; repeated: {dupes}")
        ei = np.asarray(self.edge_index)
        if ei.size == 0:
            ei = np.zeros((2, 0), dtype=np.int64)
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(
                f"edge_index must have shape [2, E] (row 0 callers, row 1 callees), got "
                f"{ei.shape}; transpose an [E, 2] edge list with .T"
            )
        if not np.issubdtype(ei.dtype, np.integer):
            raise TypeError(f"edge_index must hold integer service indices, got dtype {ei.dtype}")
        ei = ei.astype(np.int64, copy=True)
        n = len(names)
        bad = (ei < 0) | (ei >= n)
        if bad.any():
            raise ValueError(
                f"edge_index refers to service {int(ei[bad][0])}, but there are only {n} "
                f"services (valid indices 0..{n - 1})"
            )
        loops = ei[0] == ei[1]
        if loops.any():
            raise ValueError(f"service {names[int(ei[0, loops][0])]!r} calls itself; drop self-loops")
        if np.unique(ei, axis=1).shape[1] != ei.shape[1]:
            raise ValueError("edge_index has a repeated (caller, callee) pair; list each dependency once")
        ei.flags.writeable = False
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "edge_index", ei)

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    # Neighbour lists, built on first use (cached_property writes the instance dict directly,
    # which a frozen dataclass allows). Each list entry is a sorted, read-only int64 array.
    @cached_property
    def _callers(self) -> list[np.ndarray]:
        caller, callee = self.edge_index
        by = np.lexsort((caller, callee))
        return _split(caller[by], callee[by], self.num_nodes)

    @cached_property
    def _callees(self) -> list[np.ndarray]:
        caller, callee = self.edge_index
        by = np.lexsort((callee, caller))
        return _split(callee[by], caller[by], self.num_nodes)

    @cached_property
    def _in_edges(self) -> list[np.ndarray]:
        """Per service, the ids of the edges into it, ascending (the order load sums them in)."""
        callee = self.edge_index[1]
        by = np.argsort(callee, kind="stable")
        return _split(by.astype(np.int64), callee[by], self.num_nodes)

    def _check(self, i: int) -> int:
        i = as_int(i, "service index")
        if not 0 <= i < self.num_nodes:
            raise IndexError(f"service index {i} out of range 0..{self.num_nodes - 1}")
        return i

    def index(self, name: str) -> int:
        """Index of the service called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no service named {name!r}; services are {self.names}") from None

    def callers_of(self, i: int) -> np.ndarray:
        """Sorted ``[k]`` int64 indices of the services that call service ``i``."""
        return self._callers[self._check(i)].copy()

    def callees_of(self, i: int) -> np.ndarray:
        """Sorted ``[k]`` int64 indices of the services that service ``i`` calls."""
        return self._callees[self._check(i)].copy()

    def topological_order(self) -> list[int]:
        """Service indices with every caller before its callees; raises ``ValueError`` on a cycle."""
        indeg = np.bincount(self.edge_index[1], minlength=self.num_nodes)
        callees = self._callees
        ready = deque(int(i) for i in np.flatnonzero(indeg == 0))
        order: list[int] = []
        while ready:
            u = ready.popleft()
            order.append(u)
            for v in callees[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    ready.append(int(v))
        if len(order) < self.num_nodes:
            stuck = [self.names[i] for i in range(self.num_nodes) if indeg[i] > 0]
            raise ValueError(
                f"the service graph has a dependency cycle through {stuck}; it must be a DAG "
                "(caller -> callee): remove one dependency on each cycle"
            )
        return order

    def is_acyclic(self) -> bool:
        try:
            self.topological_order()
        except ValueError:
            return False
        return True

    def upstream_hops(self, i: int, max_hops: int | None = None) -> dict[int, int]:
        """``{service: hops}`` for ``i`` (0 hops) and every service that transitively calls it.

        Hops are the length of the shortest caller path, the distance an incident at ``i``
        travels to reach that service. ``max_hops`` stops the search that many hops up.
        """
        i = self._check(i)
        callers = self._callers
        hops = {i: 0}
        queue = deque([i])
        while queue:
            v = queue.popleft()
            h = hops[v] + 1
            if max_hops is not None and h > max_hops:
                continue
            for u in callers[v].tolist():
                if u not in hops:
                    hops[u] = h
                    queue.append(u)
        return hops

    def max_upstream_hops(self, limit: int | None = None) -> int:
        """The largest shortest-caller-path length over all (service, upstream service) pairs.

        Capped at ``limit``. One breadth-first search from every service at once, a level at a
        time, on ``[roots, N]`` bool frontiers: ``O(levels * N * E)`` bit operations, no Python
        loop over services (a thousand separate searches took seconds).
        """
        n, e = self.num_nodes, self.num_edges
        if e == 0 or limit == 0:
            return 0
        caller, callee = self.edge_index
        by = np.argsort(caller, kind="stable")
        via, owners = callee[by], caller[by]
        firsts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])  # each caller's first edge
        has_callees = owners[firsts]
        reached = np.eye(n, dtype=bool)
        frontier = reached.copy()
        rows = np.arange(n)
        level = 0
        chunk = max(1, (1 << 24) // e)  # bounds the [rows, E] temporary at 16 MB
        while rows.size and (limit is None or level < limit):
            nxt = np.zeros((rows.size, n), dtype=bool)
            for s in range(0, rows.size, chunk):
                sel = frontier[rows[s : s + chunk]]
                nxt[s : s + chunk, has_callees] = np.logical_or.reduceat(sel[:, via], firsts, axis=1)
            nxt &= ~reached[rows]
            alive = nxt.any(axis=1)
            if not alive.any():
                break
            level += 1
            rows, nxt = rows[alive], nxt[alive]
            reached[rows] |= nxt
            frontier[rows] = nxt
        return level

    def to_igraph(self) -> Any:
        """A directed ``igraph.Graph`` (caller -> callee) with a ``name`` vertex attribute."""
        import igraph

        g = igraph.Graph(n=self.num_nodes, edges=self.edge_index.T.tolist(), directed=True)
        g.vs["name"] = list(self.names)
        return g


def shop_graph() -> ServiceGraph:
    """The classic 8-service online shop (``SHOP_SERVICES``, ``SHOP_DEPENDENCIES``).

    Frontend is the only entry service; Auth, Inventory, Fraud and Notification are leaves.
    Fraud sits three hops below Frontend (Fraud <- Payment <- Order <- Frontend).
    """
    names = list(SHOP_SERVICES)
    edges = [(names.index(a), names.index(b)) for a, b in SHOP_DEPENDENCIES]
    return ServiceGraph(names, np.array(edges, dtype=np.int64).T)


def random_service_dag(num_services: int, *, edge_prob: float = 0.1, seed: int) -> ServiceGraph:
    """A random acyclic service graph; every service is reachable from the entry service 0.

    Service ``j > 0`` gets one caller drawn uniformly from ``0..j-1`` (so all are reachable
    from 0), and each further pair ``i < j`` becomes a dependency ``i -> j`` with probability
    ``edge_prob``. Edges only go from lower to higher index, so the graph is acyclic and the
    indices are a topological order. Names are ``svc-00``, ``svc-01``, ...

    Traffic reaching a service is the sum over every call path from the entry, so dense graphs
    of many services carry astronomically large loads: for hundreds of services use an
    ``edge_prob`` of a few over ``num_services`` (e.g. ``2 / num_services``), as real call graphs
    are sparse (a service calls a handful of others).
    """
    num_services = as_int(num_services, "num_services")
    if num_services < 1:
        raise ValueError(f"num_services must be >= 1, got {num_services}")
    edge_prob = as_float(edge_prob, "edge_prob")
    if not 0.0 <= edge_prob <= 1.0:
        raise ValueError(f"edge_prob is a probability and must lie in [0, 1], got {edge_prob}")
    seed = as_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    n = num_services
    adj = np.zeros((n, n), dtype=bool)
    if n > 1:
        children = np.arange(1, n)
        parents = np.floor(rng.random(n - 1) * children).astype(np.int64)
        adj[parents, children] = True
        iu, ju = np.triu_indices(n, k=1)
        extra = rng.random(iu.size) < edge_prob
        adj[iu[extra], ju[extra]] = True
    callers, callees = np.nonzero(adj)  # row-major: sorted by caller, then callee
    width = max(2, len(str(n - 1)))
    names = [f"svc-{i:0{width}d}" for i in range(n)]
    return ServiceGraph(names, np.stack([callers, callees]).astype(np.int64))
