import type { ServiceDeployResult } from '../pipeline/ports.ts';
import { newId } from './ids.ts';
import { text, textOrNull, type Row, type Sql } from './sql.ts';

export interface DeploymentView {
  id: string;
  pipeline: string;
  service: string;
  image: string;
  digest: string;
  commit: string;
  runId: string;
  deployedAt: string;
  replacedAt: string | null;
}

function deploymentRow(r: Row): DeploymentView {
  return {
    id: text(r, 'id'),
    pipeline: text(r, 'pipeline'),
    service: text(r, 'service'),
    image: text(r, 'image_ref'),
    digest: text(r, 'digest'),
    commit: text(r, 'commit_sha'),
    runId: text(r, 'run_id'),
    deployedAt: text(r, 'deployed_at'),
    replacedAt: textOrNull(r, 'replaced_at'),
  };
}

/**
 * What served where, from when until when (deployment history), and how each service's
 * deploy ended per run. Written only for events the run lifecycle accepted.
 */
export class DeploymentRepository {
  readonly #sql: Sql;
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** `service` of `pipeline` now serves this image: the previous record ends now. */
  record(pipeline: string, d: { service: string; image: string; digest: string; commit: string; runId: string; at: string }): void {
    this.#sql.transaction(() => {
      this.#sql.run('UPDATE deployments SET replaced_at = ? WHERE pipeline = ? AND service = ? AND replaced_at IS NULL', d.at, pipeline, d.service);
      this.#sql.run(
        'INSERT INTO deployments (id, pipeline, service, image_ref, digest, commit_sha, run_id, deployed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        newId('d'), pipeline, d.service, d.image, d.digest, d.commit, d.runId, d.at,
      );
    });
  }

  recordServiceResult(runId: string, at: string, r: ServiceDeployResult): void {
    this.#sql.run(
      'INSERT INTO service_deploys (run_id, service, outcome, previous_image, final_image, task_errors, message, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      runId, r.service, r.outcome, r.previousImage, r.image, JSON.stringify(r.taskErrors), r.message, at,
    );
  }

  /** The deployment currently serving (latest, on any of the pipeline's services). */
  currentDeployment(pipeline: string): DeploymentView | undefined {
    const row = this.#sql.get('SELECT * FROM deployments WHERE pipeline = ? AND replaced_at IS NULL ORDER BY seq DESC LIMIT 1', pipeline);
    return row ? deploymentRow(row) : undefined;
  }

  /** What each service of the pipeline runs according to our records. */
  currentDeployments(pipeline: string): DeploymentView[] {
    return this.#sql.all('SELECT * FROM deployments WHERE pipeline = ? AND replaced_at IS NULL ORDER BY seq', pipeline).map(deploymentRow);
  }

  deployments(pipeline: string, limit = 100): DeploymentView[] {
    return this.#sql.all('SELECT * FROM deployments WHERE pipeline = ? ORDER BY seq DESC LIMIT ?', pipeline, limit).map(deploymentRow);
  }

  getDeployment(id: string): DeploymentView | undefined {
    const row = this.#sql.get('SELECT * FROM deployments WHERE id = ?', id);
    return row ? deploymentRow(row) : undefined;
  }
}
