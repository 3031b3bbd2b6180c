import type { NotificationStore } from '../store/notification-store.ts';
import type { ReportStore } from '../store/report-store.ts';

/**
 * The pipeline's reporting, as the JSON API and the pages show it:
 * - `reports.github`: the newest GitHub requests (deployment, statuses, check run or
 *   commit status) with their state and every attempt's response code;
 * - `notifications`: the newest chat messages and webhooks, likewise;
 * - `warnings`: what an operator must fix (e.g. GitHub refuses our credentials).
 * Bodies are left out (they are what was sent; GET /api/runs/:id/reports has them).
 */
export function integrationFields(reports: ReportStore, notifications: NotificationStore, pipeline: string) {
  return {
    warnings: reports.warnings(pipeline),
    reports: {
      github: reports.recentSteps(pipeline, 30).map((s) => ({
        run: s.runId,
        kind: s.kind,
        state: s.state,
        status: s.status,
        attempts: s.attemptLog,
        createdAt: s.createdAt,
        doneAt: s.doneAt,
      })),
    },
    notifications: notifications.recent(pipeline, 30).map((n) => ({
      id: n.id,
      run: n.runId,
      event: n.event,
      channel: n.channel,
      receiver: n.label,
      status: n.status,
      attempts: reports.attempts('notify', n.id),
      createdAt: n.createdAt,
      doneAt: n.doneAt,
    })),
  };
}

export type IntegrationFields = ReturnType<typeof integrationFields>;
