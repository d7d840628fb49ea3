// CloudWatch alarms on the AWS stack (issue 18 item 4): on the RDS instances replica lag, free
// storage, connections and transaction-ID wraparound, thresholds from `aws.alarms` (infra/config.ts);
// on the pooler, its healthy tasks as the load balancer counts them. RDS and the load balancer publish
// every one of these metrics themselves (AWS/RDS, AWS/NetworkELB), so nothing runs to feed them.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { AwsAlarmConfig } from "../config";

const GiB = 1024 ** 3;

export interface AlarmedInstance {
  /** primary, replica-0, ... */
  readonly node: string;
  readonly identifier: pulumi.Input<string>;
  readonly replica: boolean;
}

/** The alarms of every instance; `maxConnections` is the parameter group's max_connections. */
export function rdsAlarms(name: string, instances: readonly AlarmedInstance[], cfg: AwsAlarmConfig, maxConnections: number, parent: pulumi.Resource): aws.cloudwatch.MetricAlarm[] {
  const actions = cfg.topicArn ? { alarmActions: [cfg.topicArn], okActions: [cfg.topicArn] } : {};
  const alarm = (i: AlarmedInstance, what: string, a: { metricName: string; statistic: string; comparisonOperator: string; threshold: number; description: string }) =>
    new aws.cloudwatch.MetricAlarm(
      `${name}-${i.node}-${what}`,
      {
        namespace: "AWS/RDS",
        dimensions: { DBInstanceIdentifier: i.identifier },
        period: 60,
        evaluationPeriods: cfg.evaluationMinutes,
        // No data (an instance being created or rebooted) is no alarm; a metric that stops for long shows as INSUFFICIENT_DATA.
        treatMissingData: "missing",
        alarmDescription: pulumi.interpolate`${i.identifier}: ${a.description}`,
        ...actions,
        metricName: a.metricName,
        statistic: a.statistic,
        comparisonOperator: a.comparisonOperator,
        threshold: a.threshold,
      },
      { parent },
    );
  const alarms: aws.cloudwatch.MetricAlarm[] = [];
  for (const i of instances) {
    if (i.replica) {
      alarms.push(alarm(i, "replica-lag", { metricName: "ReplicaLag", statistic: "Maximum", comparisonOperator: "GreaterThanThreshold", threshold: cfg.replicaLagSeconds, description: `replica lag above ${cfg.replicaLagSeconds} s` }));
    } else {
      // Wraparound: RDS's own count of the oldest unfrozen transaction ID's age; PostgreSQL stops writes near 2^31.
      alarms.push(
        alarm(i, "wraparound", { metricName: "MaximumUsedTransactionIDs", statistic: "Maximum", comparisonOperator: "GreaterThanThreshold", threshold: cfg.maxUsedTransactionIds, description: `transaction IDs used above ${cfg.maxUsedTransactionIds} (vacuum freeze is behind)` }),
      );
    }
    alarms.push(alarm(i, "free-storage", { metricName: "FreeStorageSpace", statistic: "Minimum", comparisonOperator: "LessThanThreshold", threshold: cfg.freeStorageGb * GiB, description: `free storage below ${cfg.freeStorageGb} GiB` }));
    const connections = Math.floor((maxConnections * cfg.connectionsPercent) / 100);
    alarms.push(alarm(i, "connections", { metricName: "DatabaseConnections", statistic: "Maximum", comparisonOperator: "GreaterThanThreshold", threshold: connections, description: `connections above ${connections} (${cfg.connectionsPercent}% of max_connections ${maxConnections})` }));
  }
  return alarms;
}

/** The pooler's load balancer and target group (their CloudWatch dimension values, `arnSuffix`) and its task count. */
export interface AlarmedPooler {
  readonly loadBalancer: pulumi.Input<string>;
  readonly targetGroup: pulumi.Input<string>;
  readonly tasks: number;
}

/**
 * The pooler's alarm: fewer healthy tasks than the service runs (the load balancer's TCP health
 * check, the same the ECS service replaces tasks by) for `evaluationMinutes`.
 */
export function poolerAlarm(name: string, pooler: AlarmedPooler, cfg: AwsAlarmConfig, parent: pulumi.Resource): aws.cloudwatch.MetricAlarm {
  const actions = cfg.topicArn ? { alarmActions: [cfg.topicArn], okActions: [cfg.topicArn] } : {};
  return new aws.cloudwatch.MetricAlarm(
    `${name}-pooler-healthy-tasks`,
    {
      namespace: "AWS/NetworkELB",
      dimensions: { LoadBalancer: pooler.loadBalancer, TargetGroup: pooler.targetGroup },
      period: 60,
      evaluationPeriods: cfg.evaluationMinutes,
      // The load balancer reports the count every minute, 0 included: no data means no load balancer yet.
      treatMissingData: "missing",
      alarmDescription: `${name}: fewer than ${pooler.tasks} healthy pooler task(s) behind the load balancer`,
      ...actions,
      metricName: "HealthyHostCount",
      statistic: "Minimum",
      comparisonOperator: "LessThanThreshold",
      threshold: pooler.tasks,
    },
    { parent },
  );
}
