"""Every Cypher statement ``Neo4jStore`` runs, in one place so the schema can be read at a glance.

Graph shape (times are epoch microseconds; ``origin`` is ``<purpose>@<collection dataset>``):

- ``(:Identifier {ref, category, display, erasures})-[:BELONGS_TO]->(:Subject {ref})``;
  ``erasures`` is the sorted list of erasure times (rare, so a list property).
- ``(:Identifier)-[:COLLECTED_INTO {purpose, at, event_id}]->(:Dataset {key, system, name})``,
  one per collection event.
- ``(:Identifier)-[:COPY_IN {dataset, origin, epoch, since, hops, event_id, source, job}]
  ->(:Dataset)``: derived taint, one per (identifier, dataset, origin, epoch).
- ``(:Dataset)-[:FLOWS_TO {job}]->(:Dataset)``: a whole-dataset flow (one per source, target,
  job), and ``(:Dataset)-[:FLOW_RUN {source, target, job, at, event_id}]->(:Dataset)``: one per
  run of it (runs are individual records: adding one never rewrites the others).
- ``(:Dataset)-[:USED_FOR {job}]->(:Purpose {key})`` and
  ``(:Dataset)-[:USE_RUN {dataset, purpose, job, at, event_id}]->(:Purpose)``: the same for
  whole-dataset uses.
- ``(:Dataset)-[:READ_RUN {dataset, job, at, event_id}]->(:Job)``: one per run of a job that
  read the dataset and wrote none (``DataRead``); nothing propagates along it, so there is no
  edge relationship beside the runs: the edge is their distinct (dataset, job).
- ``(:Identifier)-[:CARRIED_TO {source, job, at, event_id}]->(:Dataset)``: a flow that listed
  the identifier (to its target dataset).
- ``(:Identifier)-[:USED_IN {dataset, job, at, event_id}]->(:Purpose)``: a use that listed it.
- ``(:Job {name})``: every job seen (the job of an edge is a property of it).
- ``(:Alert {alert_id, revision, status, rule, severity, identifier, category, display,
  subjects, origin_dataset, origin_purpose, use_dataset, use_job, use_purpose, occurred_at,
  evidence_event_ids, evidence_at, evidence_datasets, evidence_jobs,
  evidence_sources})-[:ABOUT]->(:Identifier)``: every field of the alert once, its evidence
  path as parallel lists (:mod:`graph.neo4j_alerts`, which rebuilds the alert exactly);
  ``queued_at``/``queued_index`` are set while the alert's latest revision waits in the
  outbox.
- ``(:EventClaim {key, digest})``: who owns an event id on the Kafka path (an id, or
  ``id#i`` for part i of a split event; :mod:`lineage.event_identity`), not part of the graph.

Run records repeat their edge's keys (``source``, ``target``, ``job``) so one composite index
answers "the first run at or after t" and "the latest run before t" with a seek and ``LIMIT 1``
whatever the number of runs. ``COPY_IN.dataset`` repeats the target's key for the arrivals
seek (``COPY_IN(dataset, since)``). Lookups that name both ends of a relationship seek both
nodes, then match it in a subquery (``Expand(Into)``: the cheaper side is walked).

``FETCH``/``FETCH_LOCKING`` and ``WRITE`` take one map parameter (``$r``/``$w``, a list per
kind): Neo4j keys its plan cache by parameter types, and separate lists would compile a new plan
for every combination of empty and non-empty kinds. Each fetch or write is one statement.
"""

from __future__ import annotations

from typing import Final

#: Idempotent schema; unique constraints double as the indexes every MERGE and read seeks on.
SCHEMA: Final = (
    "CREATE CONSTRAINT identifier_ref IF NOT EXISTS FOR (n:Identifier) REQUIRE n.ref IS UNIQUE",
    "CREATE CONSTRAINT subject_ref IF NOT EXISTS FOR (n:Subject) REQUIRE n.ref IS UNIQUE",
    "CREATE CONSTRAINT dataset_key IF NOT EXISTS FOR (n:Dataset) REQUIRE n.key IS UNIQUE",
    "CREATE CONSTRAINT job_name IF NOT EXISTS FOR (n:Job) REQUIRE n.name IS UNIQUE",
    "CREATE CONSTRAINT purpose_key IF NOT EXISTS FOR (n:Purpose) REQUIRE n.key IS UNIQUE",
    "CREATE CONSTRAINT alert_id IF NOT EXISTS FOR (n:Alert) REQUIRE n.alert_id IS UNIQUE",
    "CREATE CONSTRAINT event_claim_key IF NOT EXISTS FOR (n:EventClaim) REQUIRE n.key IS UNIQUE",
    # arrivals: equality on the dataset then a range on since, one seek
    "CREATE INDEX copy_in_dataset_since IF NOT EXISTS "
    "FOR ()-[r:COPY_IN]-() ON (r.dataset, r.since)",
    # runs: equality on the edge, then a range on at; (at, event_id) order from the index
    "CREATE INDEX flow_run_edge_at IF NOT EXISTS "
    "FOR ()-[r:FLOW_RUN]-() ON (r.source, r.target, r.job, r.at, r.event_id)",
    "CREATE INDEX use_run_edge_at IF NOT EXISTS "
    "FOR ()-[r:USE_RUN]-() ON (r.dataset, r.purpose, r.job, r.at, r.event_id)",
    "CREATE INDEX read_run_edge_at IF NOT EXISTS "
    "FOR ()-[r:READ_RUN]-() ON (r.dataset, r.job, r.at, r.event_id)",
    # the outbox, oldest first, straight from the index (only queued alerts have the keys)
    "CREATE INDEX alert_outbox IF NOT EXISTS FOR (n:Alert) ON (n.queued_at, n.queued_index)",
)
AWAIT_INDEXES: Final = "CALL db.awaitIndexes($seconds)"

# -- fetch -----------------------------------------------------------------------------------

#: Inside a unit of work, before any read: exclusive locks on the nodes the reads are about
#: (datasets first, then identifiers, each sorted). Setting and removing a scratch property is
#: the documented Cypher idiom; Neo4j 5 holds the write lock until the transaction ends, so a
#: second unit's lock blocks until the first commits, and then reads what it committed. The
#: ``merge_*`` lists are the state keys of a batch about to be written: MERGE also locks a
#: node that does not exist yet (through the unique constraint), so two units creating the same
#: dataset serialize too. The planner puts an Eager after these subqueries (their SETs conflict
#: with the reads below), so every lock is held before the first read runs.
_LOCKS: Final = """
CALL () {
  UNWIND $r.lock.merge_datasets AS key
  MERGE (d:Dataset {key: key})
  SET d._lock = true
  REMOVE d._lock
  RETURN count(d) AS merged_datasets
}
CALL () {
  UNWIND $r.lock.datasets AS key
  MATCH (d:Dataset {key: key})
  SET d._lock = true
  REMOVE d._lock
  RETURN count(d) AS locked_datasets
}
CALL () {
  UNWIND $r.lock.merge_identifiers AS ref
  MERGE (i:Identifier {ref: ref})
  SET i._lock = true
  REMOVE i._lock
  RETURN count(i) AS merged_identifiers
}
CALL () {
  UNWIND $r.lock.identifiers AS ref
  MATCH (i:Identifier {ref: ref})
  SET i._lock = true
  REMOVE i._lock
  RETURN count(i) AS locked_identifiers
}
"""

_COPY: Final = "[d.key, c.origin, c.epoch, c.since, c.hops, c.event_id, c.source, c.job]"

#: What the planner needs about a batch's keys (``lineage.planner.State``).
_STATE: Final = """
CALL () {
  UNWIND $r.state.identifiers AS ref
  MATCH (i:Identifier {ref: ref})
  WHERE i.category IS NOT NULL
  RETURN collect([ref, coalesce(i.erasures, []),
                  COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref }]) AS s_identifiers
}
CALL () {
  UNWIND $r.state.datasets AS key
  MATCH (d:Dataset {key: key})
  WHERE d.system IS NOT NULL
  RETURN collect(key) AS s_datasets
}
CALL () {
  UNWIND $r.state.jobs AS name
  MATCH (j:Job {name: name})
  RETURN collect(name) AS s_jobs
}
CALL () {
  UNWIND $r.state.collections AS k
  MATCH (i:Identifier {ref: k[0]}), (d:Dataset {key: k[1]})
  WHERE EXISTS {
    MATCH (i)-[c:COLLECTED_INTO]->(d)
    WHERE c.purpose = k[2] AND c.at = k[3] AND c.event_id = k[4]
  }
  RETURN collect(k) AS s_collections
}
CALL () {
  UNWIND $r.state.flow_edges AS k
  MATCH (s:Dataset {key: k[0]}), (t:Dataset {key: k[1]})
  WHERE EXISTS { MATCH (s)-[e:FLOWS_TO]->(t) WHERE e.job = k[2] }
  RETURN collect(k) AS s_flow_edges
}
CALL () {
  UNWIND $r.state.use_edges AS k
  MATCH (d:Dataset {key: k[0]}), (p:Purpose {key: k[1]})
  WHERE EXISTS { MATCH (d)-[e:USED_FOR]->(p) WHERE e.job = k[2] }
  RETURN collect(k) AS s_use_edges
}
CALL () {
  UNWIND $r.state.flow_runs AS k
  RETURN collect([k,
    EXISTS {
      MATCH ()-[x:FLOW_RUN]->()
      USING INDEX x:FLOW_RUN(source, target, job, at, event_id)
      WHERE x.source = k[0] AND x.target = k[1] AND x.job = k[2] AND x.at = k[3]
        AND x.event_id = k[4]
    },
    COLLECT {
      MATCH ()-[x:FLOW_RUN]->()
      USING INDEX x:FLOW_RUN(source, target, job, at, event_id)
      WHERE x.source = k[0] AND x.target = k[1] AND x.job = k[2] AND x.at < k[3]
        AND x.event_id IS NOT NULL
      RETURN x.at ORDER BY x.source DESC, x.target DESC, x.job DESC, x.at DESC LIMIT 1
    }]) AS s_flow_runs
}
CALL () {
  UNWIND $r.state.use_runs AS k
  RETURN collect([k,
    EXISTS {
      MATCH ()-[x:USE_RUN]->()
      USING INDEX x:USE_RUN(dataset, purpose, job, at, event_id)
      WHERE x.dataset = k[0] AND x.purpose = k[1] AND x.job = k[2] AND x.at = k[3]
        AND x.event_id = k[4]
    },
    COLLECT {
      MATCH ()-[x:USE_RUN]->()
      USING INDEX x:USE_RUN(dataset, purpose, job, at, event_id)
      WHERE x.dataset = k[0] AND x.purpose = k[1] AND x.job = k[2] AND x.at < k[3]
        AND x.event_id IS NOT NULL
      RETURN x.at ORDER BY x.dataset DESC, x.purpose DESC, x.job DESC, x.at DESC LIMIT 1
    }]) AS s_use_runs
}
CALL () {
  UNWIND $r.state.read_runs AS k
  WITH k WHERE EXISTS {
    MATCH ()-[x:READ_RUN]->()
    USING INDEX x:READ_RUN(dataset, job, at, event_id)
    WHERE x.dataset = k[0] AND x.job = k[1] AND x.at = k[2] AND x.event_id = k[3]
  }
  RETURN collect(k) AS s_read_runs
}
CALL () {
  UNWIND $r.state.carried AS k
  MATCH (i:Identifier {ref: k[0]}), (t:Dataset {key: k[2]})
  WHERE EXISTS {
    MATCH (i)-[c:CARRIED_TO]->(t)
    WHERE c.source = k[1] AND c.job = k[3] AND c.at = k[4] AND c.event_id = k[5]
  }
  RETURN collect(k) AS s_carried
}
CALL () {
  UNWIND $r.state.specific AS k
  MATCH (i:Identifier {ref: k[0]}), (p:Purpose {key: k[2]})
  WHERE EXISTS {
    MATCH (i)-[u:USED_IN]->(p)
    WHERE u.dataset = k[1] AND u.job = k[3] AND u.at = k[4] AND u.event_id = k[5]
  }
  RETURN collect(k) AS s_specific
}
"""

#: What propagation reads, each kind keyed as in ``lineage.ports.Request``.
_READS: Final = f"""
CALL () {{
  UNWIND $r.identifiers AS ref
  MATCH (i:Identifier {{ref: ref}})
  WHERE i.category IS NOT NULL
  RETURN collect([ref, i.category, i.display, coalesce(i.erasures, []),
                  COLLECT {{ MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref }}]) AS identifiers
}}
CALL () {{
  UNWIND $r.copies AS k
  MATCH (i:Identifier {{ref: k[0]}}), (d:Dataset {{key: k[1]}})
  CALL (i, d) {{
    MATCH (i)-[c:COPY_IN]->(d)
    RETURN c
  }}
  RETURN collect([k[0], {_COPY}]) AS copies
}}
CALL () {{
  UNWIND $r.carried AS k
  MATCH (i:Identifier {{ref: k[0]}})-[c:CARRIED_TO]->(t:Dataset)
  WHERE c.source = k[1]
  RETURN collect([k[0], k[1], t.key, c.job, c.at, c.event_id]) AS carried
}}
CALL () {{
  UNWIND $r.specific AS k
  MATCH (i:Identifier {{ref: k[0]}})-[u:USED_IN]->(p:Purpose)
  WHERE u.dataset = k[1]
  RETURN collect([k[0], k[1], u.job, p.key, u.at, u.event_id]) AS specific
}}
CALL () {{
  UNWIND $r.flows AS k
  MATCH (s:Dataset {{key: k[0]}})-[e:FLOWS_TO]->(t:Dataset)
  CALL (k, e, t) {{
    MATCH ()-[x:FLOW_RUN]->()
    USING INDEX x:FLOW_RUN(source, target, job, at, event_id)
    WHERE x.source = k[0] AND x.target = t.key AND x.job = e.job AND x.at >= k[1]
      AND x.event_id IS NOT NULL
    RETURN x ORDER BY x.source, x.target, x.job, x.at, x.event_id LIMIT 1
  }}
  RETURN collect([k[0], k[1], t.key, e.job, x.at, x.event_id]) AS flows
}}
CALL () {{
  UNWIND $r.uses AS k
  MATCH (d:Dataset {{key: k[0]}})-[e:USED_FOR]->(p:Purpose)
  CALL (k, e, p) {{
    MATCH ()-[x:USE_RUN]->()
    USING INDEX x:USE_RUN(dataset, purpose, job, at, event_id)
    WHERE x.dataset = k[0] AND x.purpose = p.key AND x.job = e.job AND x.at >= k[1]
      AND x.event_id IS NOT NULL
    RETURN x ORDER BY x.dataset, x.purpose, x.job, x.at, x.event_id LIMIT 1
  }}
  RETURN collect([k[0], k[1], p.key, e.job, x.at, x.event_id]) AS uses
}}
CALL () {{
  UNWIND $r.arrivals AS k
  MATCH (i:Identifier)-[c:COPY_IN]->(d:Dataset)
  USING INDEX c:COPY_IN(dataset, since)
  WHERE c.dataset = k[0] AND c.since > k[1] AND c.since <= k[2]
    AND (k[3] IS NULL OR split(c.origin, '@')[0] IN k[3])
  RETURN collect([k, i.ref, {_COPY}]) AS arrivals
}}
CALL () {{
  UNWIND $r.histories AS ref
  MATCH (i:Identifier {{ref: ref}})
  RETURN collect([ref,
    COLLECT {{
      MATCH (i)-[c:COLLECTED_INTO]->(d:Dataset) RETURN [d.key, c.purpose, c.at, c.event_id]
    }},
    COLLECT {{ MATCH (i)-[c:COPY_IN]->(d:Dataset) RETURN {_COPY} }},
    COLLECT {{ MATCH (a:Alert)-[:ABOUT]->(i) RETURN a.alert_id }}]) AS histories
}}
CALL () {{
  UNWIND $r.alerts AS id
  MATCH (a:Alert {{alert_id: id}})
  RETURN collect(a {{.*}}) AS alerts
}}
"""

_RETURN: Final = """
RETURN s_identifiers, s_datasets, s_jobs, s_collections, s_flow_edges, s_use_edges,
       s_flow_runs, s_use_runs, s_read_runs, s_carried, s_specific, identifiers, copies,
       carried, specific,
       flows, uses, arrivals, histories, alerts
"""

#: The hot statements keep the plan they were first compiled with. Neo4j replans a cached
#: query when the graph's statistics drift (repeatedly while a graph grows from empty), and
#: compiling one of these statements took 0.7-1.3 s here, far longer than running it for a
#: 500-event batch (tens of ms); their plans start from unique-constraint and
#: relationship-index seeks whatever the statistics (``tests/integration/test_neo4j_store.py``
#: checks them right after a clear), so the plan kept is a seek-based one.
_KEEP_PLAN: Final = "CYPHER replan=skip\n"

#: A fetch outside a unit of work: read-only, no locks.
FETCH: Final = _KEEP_PLAN + _STATE + _READS + _RETURN
#: A fetch inside a unit of work: lock first, then the same reads.
FETCH_LOCKING: Final = _KEEP_PLAN + _LOCKS + _STATE + _READS + _RETURN

# -- write -----------------------------------------------------------------------------------

#: Fact rows (already merged by the planner), then dropped and derived copies, then alerts.
#: Nodes are MERGEd on their unique keys. Fact rows are only the facts the unit's state read
#: found absent, read under the write locks of their identifier and dataset nodes (see
#: ``_LOCKS``; ``lineage.tracker.merge_facts``), so their relationships are CREATEd: a second
#: MERGE check of each would re-read what the state read just did (its ``Expand(Into)``
#: checks were 40 % of this statement's database hits in a ``PROFILE``). Dataset-level facts
#: are MERGEd or checked (edges and runs: few per batch), since in the partitioned topology
#: every partition reports them (``lineage.changes``). Runs keep an index-seek check first.
#: Dropping an identifier's copies locks their datasets: a unit that read them as arrivals
#: (under the dataset's lock) then waits, or deadlocks and is retried, instead of carrying a
#: copy the recompute removed.
WRITE: Final = (
    _KEEP_PLAN
    + """
CALL () {
  UNWIND $w.datasets AS row
  MERGE (d:Dataset {key: row.key})
  SET d.system = row.system, d.name = row.name
}
CALL () {
  UNWIND $w.identifiers AS row
  MERGE (i:Identifier {ref: row.ref})
  SET i.category = row.category, i.display = row.display
}
CALL () {
  UNWIND $w.subjects AS row
  MERGE (i:Identifier {ref: row.ref})
  MERGE (s:Subject {ref: row.subject})
  CREATE (i)-[:BELONGS_TO]->(s)
}
CALL () {
  UNWIND $w.erasures AS row
  MATCH (i:Identifier {ref: row.ref})
  SET i.erasures = COLLECT {
    UNWIND coalesce(i.erasures, []) + row.ats AS at
    WITH DISTINCT at
    RETURN at ORDER BY at
  }
}
CALL () {
  UNWIND $w.jobs AS row
  MERGE (:Job {name: row.name})
}
CALL () {
  UNWIND $w.collections AS row
  MERGE (i:Identifier {ref: row.ref})
  MERGE (d:Dataset {key: row.dataset})
  CREATE (i)-[:COLLECTED_INTO {purpose: row.purpose, at: row.at, event_id: row.event_id}]->(d)
}
CALL () {
  UNWIND $w.flow_edges AS row
  MERGE (s:Dataset {key: row.a})
  MERGE (t:Dataset {key: row.b})
  MERGE (s)-[:FLOWS_TO {job: row.job}]->(t)
}
CALL () {
  UNWIND $w.use_edges AS row
  MERGE (d:Dataset {key: row.a})
  MERGE (p:Purpose {key: row.b})
  MERGE (d)-[:USED_FOR {job: row.job}]->(p)
}
CALL () {
  UNWIND $w.flow_runs AS row
  MATCH (s:Dataset {key: row.a}), (t:Dataset {key: row.b})
  WHERE NOT EXISTS {
    MATCH ()-[x:FLOW_RUN]->()
    USING INDEX x:FLOW_RUN(source, target, job, at, event_id)
    WHERE x.source = row.a AND x.target = row.b AND x.job = row.job AND x.at = row.at
      AND x.event_id = row.event_id
  }
  CREATE (s)-[:FLOW_RUN {source: row.a, target: row.b, job: row.job, at: row.at,
                         event_id: row.event_id}]->(t)
}
CALL () {
  UNWIND $w.use_runs AS row
  MATCH (d:Dataset {key: row.a}), (p:Purpose {key: row.b})
  WHERE NOT EXISTS {
    MATCH ()-[x:USE_RUN]->()
    USING INDEX x:USE_RUN(dataset, purpose, job, at, event_id)
    WHERE x.dataset = row.a AND x.purpose = row.b AND x.job = row.job AND x.at = row.at
      AND x.event_id = row.event_id
  }
  CREATE (d)-[:USE_RUN {dataset: row.a, purpose: row.b, job: row.job, at: row.at,
                        event_id: row.event_id}]->(p)
}
CALL () {
  UNWIND $w.read_runs AS row
  MATCH (d:Dataset {key: row.a}), (j:Job {name: row.job})
  WHERE NOT EXISTS {
    MATCH ()-[x:READ_RUN]->()
    USING INDEX x:READ_RUN(dataset, job, at, event_id)
    WHERE x.dataset = row.a AND x.job = row.job AND x.at = row.at
      AND x.event_id = row.event_id
  }
  CREATE (d)-[:READ_RUN {dataset: row.a, job: row.job, at: row.at,
                         event_id: row.event_id}]->(j)
}
CALL () {
  UNWIND $w.carried AS row
  MERGE (i:Identifier {ref: row.ref})
  MERGE (t:Dataset {key: row.target})
  CREATE (i)-[:CARRIED_TO {source: row.source, job: row.job, at: row.at,
                           event_id: row.event_id}]->(t)
}
CALL () {
  UNWIND $w.specific AS row
  MERGE (i:Identifier {ref: row.ref})
  MERGE (p:Purpose {key: row.purpose})
  CREATE (i)-[:USED_IN {dataset: row.dataset, job: row.job, at: row.at,
                        event_id: row.event_id}]->(p)
}
CALL () {
  UNWIND $w.dropped AS ref
  MATCH (:Identifier {ref: ref})-[c:COPY_IN]->(d:Dataset)
  SET d._lock = true
  REMOVE d._lock
  DELETE c
}
CALL () {
  UNWIND $w.copies AS row
  MERGE (i:Identifier {ref: row.identifier})
  MERGE (d:Dataset {key: row.dataset})
  MERGE (i)-[c:COPY_IN {origin: row.origin, epoch: row.epoch}]->(d)
  WITH c, row
  WHERE c.since IS NULL OR row.since < c.since
     OR (row.since = c.since AND (row.hops < c.hops
         OR (row.hops = c.hops AND row.event_id <= c.event_id)))
  SET c.dataset = row.dataset, c.since = row.since, c.hops = row.hops,
      c.event_id = row.event_id, c.source = row.source, c.job = row.job
}
CALL () {
  UNWIND $w.alerts AS row
  MERGE (a:Alert {alert_id: row.alert_id})
  WITH a, row
  WHERE a.revision IS NULL OR row.revision > a.revision
  SET a += row.props, a.queued_at = datetime.transaction(), a.queued_index = row.index
  MERGE (i:Identifier {ref: row.props.identifier})
  MERGE (a)-[:ABOUT]->(i)
}
"""
)

# -- operator reads --------------------------------------------------------------------------

ALERTS: Final = """
MATCH (a:Alert)
WHERE $withdrawn OR a.status = 'active'
RETURN a {.*} AS alert ORDER BY a.occurred_at, a.alert_id
"""
ALERT: Final = "MATCH (a:Alert {alert_id: $alert_id}) RETURN a {.*} AS alert"

#: The ``limit`` oldest queued (transaction time, then position in the write), from the index.
UNPUBLISHED_ALERTS: Final = """
MATCH (a:Alert) USING INDEX a:Alert(queued_at, queued_index)
WHERE a.queued_at IS NOT NULL AND a.queued_index IS NOT NULL
RETURN a {.*} AS alert ORDER BY a.queued_at, a.queued_index LIMIT $limit
"""

#: Only the revision that was published leaves the outbox; unknown ids match nothing, so
#: marking is idempotent and never fails a sink's retry.
MARK_PUBLISHED: Final = """
UNWIND $rows AS row
MATCH (a:Alert {alert_id: row.alert_id})
WHERE a.revision = row.revision
REMOVE a.queued_at, a.queued_index
"""

# -- event identity (lineage.event_identity) -------------------------------------------------

#: Lock every key a batch claims, creating an empty claim for a key not seen yet: MERGE on the
#: unique key locks it even while it does not exist, so a second unit claiming the same id
#: (another worker) waits for this one to commit and then reads its digest.
READ_CLAIMS: Final = """
UNWIND $keys AS key
MERGE (c:EventClaim {key: key})
SET c._lock = true
REMOVE c._lock
RETURN key, c.digest AS digest
"""

#: Fill the claims the accepted messages own; drop the empty ones nobody owns.
WRITE_CLAIMS: Final = """
CALL () {
  UNWIND $fresh AS row
  MATCH (c:EventClaim {key: row[0]})
  SET c.digest = row[1]
}
CALL () {
  UNWIND $absent AS key
  MATCH (c:EventClaim {key: key})
  WHERE c.digest IS NULL
  DELETE c
}
"""

# -- snapshot and clear ----------------------------------------------------------------------

SNAPSHOT: Final = {
    "identifiers": """
        MATCH (i:Identifier) WHERE i.category IS NOT NULL
        RETURN i.ref AS ref, i.category AS category, i.display AS display,
               coalesce(i.erasures, []) AS erasures,
               COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref } AS subjects
    """,
    "datasets": """
        MATCH (d:Dataset) WHERE d.system IS NOT NULL
        RETURN d.key AS key, d.system AS system, d.name AS name
    """,
    "jobs": "MATCH (j:Job) RETURN j.name AS name",
    "collections": """
        MATCH (i:Identifier)-[c:COLLECTED_INTO]->(d:Dataset)
        RETURN i.ref AS identifier, d.key AS dataset, c.purpose AS purpose, c.at AS at,
               c.event_id AS event_id
    """,
    "flows": """
        MATCH ()-[r:FLOW_RUN]->()
        RETURN r.source AS source, r.target AS target, r.job AS job,
               collect([r.at, r.event_id]) AS runs
    """,
    "uses": """
        MATCH ()-[r:USE_RUN]->()
        RETURN r.dataset AS dataset, r.purpose AS purpose, r.job AS job,
               collect([r.at, r.event_id]) AS runs
    """,
    "reads": """
        MATCH ()-[r:READ_RUN]->()
        RETURN r.dataset AS dataset, r.job AS job, collect([r.at, r.event_id]) AS runs
    """,
    "carried": """
        MATCH (i:Identifier)-[c:CARRIED_TO]->(t:Dataset)
        RETURN i.ref AS identifier, c.source AS source, t.key AS target, c.job AS job,
               c.at AS at, c.event_id AS event_id
    """,
    "specific_uses": """
        MATCH (i:Identifier)-[u:USED_IN]->(p:Purpose)
        RETURN i.ref AS identifier, u.dataset AS dataset, u.job AS job, p.key AS purpose,
               u.at AS at, u.event_id AS event_id
    """,
    "copies": f"""
        MATCH (i:Identifier)-[c:COPY_IN]->(d:Dataset)
        RETURN i.ref AS identifier, {_COPY} AS copy
    """,
    "alerts": "MATCH (a:Alert) WHERE a.status = 'active' RETURN a.alert_id AS alert_id",
}

#: The small dataset/job graph. Whole-dataset edges are one relationship each; edges of flows
#: and uses of listed identifiers, and reads, are distinct over their records (a scan:
#: an operator's query, never on the write path).
EDGES: Final = """
CALL () {
  MATCH (a:Dataset)-[f:FLOWS_TO]->(b:Dataset)
  RETURN 'flow' AS kind, a.key AS a, b.key AS b, f.job AS job
  UNION
  MATCH (a:Dataset)-[u:USED_FOR]->(p:Purpose)
  RETURN 'use' AS kind, a.key AS a, p.key AS b, u.job AS job
  UNION
  MATCH ()-[c:CARRIED_TO]->(t:Dataset)
  RETURN DISTINCT 'carried' AS kind, c.source AS a, t.key AS b, c.job AS job
  UNION
  MATCH ()-[u:USED_IN]->(p:Purpose)
  RETURN DISTINCT 'specific' AS kind, u.dataset AS a, p.key AS b, u.job AS job
  UNION
  MATCH ()-[r:READ_RUN]->()
  RETURN DISTINCT 'read' AS kind, r.dataset AS a, r.job AS b, r.job AS job
}
RETURN kind, a, b, job
"""

#: Batched so a large graph never needs one huge transaction (must run outside a transaction).
CLEAR: Final = """
MATCH (n)
CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF $batch ROWS
"""

# -- the served view (``lineage sink``) ---------------------------------------------------------

#: Claims a partition made, as they were decided there: no locks, nothing read.
PUT_CLAIMS: Final = """
UNWIND $rows AS row
MERGE (c:EventClaim {key: row[0]})
SET c.digest = row[1]
"""

#: The last change applied per partition of the changes topic, kept in the view's transaction.
SINK_POSITIONS: Final = """
MATCH (p:SinkPosition {topic: $topic})
RETURN p.partition AS partition, p.seq AS seq
"""
SET_SINK_POSITIONS: Final = """
UNWIND $rows AS row
MERGE (p:SinkPosition {topic: $topic, partition: row[0]})
SET p.seq = row[1]
"""
