// The servers' connection budget, written once: max_connections follows from the pooler's settings.
// Every PgBouncer process keeps its own pools, one per pooled login, each up to default_pool_size
// plus reserve_pool_size server connections; max_db_connections caps a process at exactly that, so
// other logins through the pooler (auth_query lets any login in on Docker) cannot exceed it. On top
// comes room for what connects directly: deploys (the migrator), readers on the replicas (a hot
// standby must allow at least the primary's max_connections, so every node gets the same value),
// pg_cron, the database layer's provider and administration.

/** PgBouncer's reserve_pool_size: extra connections per pool when clients wait. */
export const RESERVE_POOL_SIZE = 5;

/** Direct connections beside the pooler's; `provider` is the postgresql provider's own cap (its `maxConnections`). */
export const DIRECT_ROOM = { migrator: 5, readers: 20, pgCron: 5, provider: 4, administration: 10 } as const;

/** Never below PostgreSQL's own default. */
export const MIN_MAX_CONNECTIONS = 100;

export interface PoolerFootprint {
  /** PgBouncer processes in front of the primary (Docker: one container; AWS: the ECS tasks). */
  readonly processes: number;
  /** Logins served through the pooler, each with its own pool per process. */
  readonly pooledLogins: number;
  readonly defaultPoolSize: number;
}

/** max_db_connections of one PgBouncer process: every pooled login's pool, reserve included. */
export function poolerServerConnections(f: PoolerFootprint): number {
  return f.pooledLogins * (f.defaultPoolSize + RESERVE_POOL_SIZE);
}

export interface ConnectionBudget {
  readonly pooled: number;
  readonly direct: number;
  readonly maxConnections: number;
}

export function connectionBudget(f: PoolerFootprint): ConnectionBudget {
  const pooled = f.processes * poolerServerConnections(f);
  const direct = Object.values(DIRECT_ROOM).reduce((a, b) => a + b, 0);
  return { pooled, direct, maxConnections: Math.max(MIN_MAX_CONNECTIONS, pooled + direct) };
}

/** Why the budget cannot fit under `ceiling` (the platform's most), naming the numbers; undefined when it fits. */
export function connectionBudgetProblem(f: PoolerFootprint, ceiling: number, ceilingWhy: string): string | undefined {
  const b = connectionBudget(f);
  if (b.maxConnections <= ceiling) return undefined;
  return (
    `needs max_connections = ${b.maxConnections} (${f.processes} pooler process${f.processes > 1 ? "es" : ""} × ${f.pooledLogins} pooled logins × ` +
    `(pool ${f.defaultPoolSize} + reserve ${RESERVE_POOL_SIZE}) = ${b.pooled}, plus ${b.direct} direct), more than the ${ceiling} ${ceilingWhy}; ` +
    `lower pooler.defaultPoolSize${f.processes > 1 ? " or aws.poolerTasks" : ""}`
  );
}
