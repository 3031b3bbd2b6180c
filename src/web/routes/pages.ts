import type { FastifyInstance } from 'fastify';
import { isTerminal } from '../../pipeline/states.ts';
import type { AppDeps } from '../app.ts';
import { reportsSection } from '../reports-section.ts';
import { badge, esc, layout, short } from '../html.ts';
import { pipelineView } from './api.ts';

/**
 * Minimal server-rendered pages. Write actions go through the JSON API with the admin
 * token (asked once, kept in sessionStorage), so no token is ever part of a page.
 */
const rebuildScript = `<script>
async function rebuild(name){
  let t=sessionStorage.getItem('deployerToken')||prompt('Admin token');if(!t)return;
  const r=await fetch('/api/pipelines/'+encodeURIComponent(name)+'/rebuild',{method:'POST',headers:{authorization:'Bearer '+t}});
  if(r.status===401){sessionStorage.removeItem('deployerToken');alert('Token refused');return}
  sessionStorage.setItem('deployerToken',t);const j=await r.json();if(j.run)location.href='/runs/'+j.run;else alert(j.error||r.status)}
</script>`;

const LOG_TAIL_LINES = 2000;

/**
 * While a run is not over, its page follows it over server-sent events: log chunks are
 * appended (as text, never markup), the status and stages update in place, and the page
 * reloads once at the end for the final services table. If the browser gives up on the
 * stream (refused, or a proxy that blocks it), the page reloads after 5 s instead, so it
 * never silently stops following the run.
 */
function liveScript(runId: string, afterSeq: number): string {
  return `<script>
(function(){
const pre=document.querySelector('pre.log'),status=document.getElementById('run-status');
const badge=(s)=>{const b=document.createElement('span');b.className='s s-'+s;b.textContent=s;return b};
const es=new EventSource('/api/runs/${runId}/events?after=${afterSeq}');
es.onerror=()=>{if(es.readyState===2)setTimeout(()=>location.reload(),5000)};
es.addEventListener('gone',()=>{es.close();location.reload()});
es.addEventListener('log',(e)=>{const d=JSON.parse(e.data);const end=pre.scrollTop+pre.clientHeight>=pre.scrollHeight-4;
pre.append(d.text);if(pre.textContent.length>4e6)pre.textContent=pre.textContent.slice(-2e6);if(end)pre.scrollTop=pre.scrollHeight});
es.addEventListener('run',(e)=>{const r=JSON.parse(e.data);status.replaceChildren(badge(r.status));
for(const s of r.stages){const row=document.getElementById('stage-'+s.name);if(!row)continue;const c=row.children;
c[1].replaceChildren(badge(s.status));c[2].textContent=s.startedAt||'';c[3].textContent=s.finishedAt||'';c[4].textContent=s.error||''}});
es.addEventListener('end',()=>{es.close();location.reload()});
})();
</script>`;
}

export async function pageRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.get('/', async (_req, reply) => {
    const rows = deps.config.pipelines.map((p) => {
      const v = pipelineView(deps, p);
      return `<tr><td><a href="/pipelines/${esc(p.name)}">${esc(p.name)}</a><br><code>${esc(p.repo)}@${esc(p.branch)}</code></td>
<td>${v.lastRun ? `<a href="/runs/${esc(v.lastRun.id)}">${badge(v.lastRun.status)}</a> ${short(v.lastRun.commit)}` : '—'}</td>
<td>${v.deployed ? `${short(v.deployed.commit)} <code>${esc(v.deployed.digest.slice(0, 19))}</code><br>${esc(v.deployed.at)}` : 'nothing deployed yet'}
${v.paused ? `<br><strong>paused</strong>: ${esc(v.pause?.reason)}` : ''}
${(v.drift ?? []).map((d) => `<br><strong class="drift">drift</strong>: ${esc(d.service)} runs <code>${esc(d.actual ?? '(service gone)')}</code>, not the deployed <code>${esc(d.recorded)}</code>`).join('')}</td>
<td>${esc(p.services.join(', '))}</td><td><button onclick="rebuild('${esc(p.name)}')">Rebuild</button></td></tr>`;
    });
    const body = `<h1>Pipelines</h1><table><tr><th>Pipeline</th><th>Last run</th><th>Deployed</th><th>Services</th><th></th></tr>${rows.join('')}</table>${rebuildScript}`;
    return reply.type('text/html; charset=utf-8').send(layout('Pipelines', body));
  });

  app.get<{ Params: { name: string } }>('/pipelines/:name', async (req, reply) => {
    const p = deps.config.pipelines.find((x) => x.name === req.params.name);
    if (!p) return reply.code(404).type('text/html; charset=utf-8').send(layout('Not found', `<p>No pipeline ${esc(req.params.name)}.</p>`));
    const { runs } = deps.store.listRuns(p.name, 50);
    const rows = runs.map(
      (r) => `<tr><td><a href="/runs/${esc(r.id)}">${esc(r.id)}</a></td><td>${badge(r.status)}</td><td>${short(r.commit)} ${esc(r.subject ?? '')}</td>
<td>${esc(r.trigger)}</td><td>${esc(r.createdAt)}</td><td>${esc(r.error ?? '')}</td></tr>`,
    );
    const body = `<h1>${esc(p.name)}</h1><p><code>${esc(p.repo)}@${esc(p.branch)}</code> → <code>${esc(p.image)}:${esc(p.tag)}</code> → ${esc(p.services.join(', '))}
<button onclick="rebuild('${esc(p.name)}')">Rebuild</button></p><table><tr><th>Run</th><th>Status</th><th>Commit</th><th>Trigger</th><th>Created</th><th>Error</th></tr>${rows.join('')}</table>${reportsSection(deps.integrations?.pipelineFields(p.name))}${rebuildScript}`;
    return reply.type('text/html; charset=utf-8').send(layout(p.name, body));
  });

  app.get<{ Params: { id: string } }>('/runs/:id', async (req, reply) => {
    const run = /^r[a-z0-9]{8,30}$/.test(req.params.id) ? deps.store.getRun(req.params.id) : undefined;
    if (!run) return reply.code(404).type('text/html; charset=utf-8').send(layout('Not found', `<p>No run ${esc(req.params.id)}.</p>`));
    const stages = run.stages
      .map((s) => `<tr id="stage-${esc(s.name)}"><td>${esc(s.name)}</td><td>${badge(s.status)}</td><td>${esc(s.startedAt ?? '')}</td><td>${esc(s.finishedAt ?? '')}</td><td>${esc(s.error ?? '')}</td></tr>`)
      .join('');
    // A page shows the end of the log (where failures are); the API streams all of it.
    const log = deps.store.logTail(run.id, LOG_TAIL_LINES);
    // Read with the tail, in the same turn: the live stream continues exactly after it.
    const lastSeq = deps.store.lastLogSeq(run.id);
    const live = isTerminal(run.status) ? '' : liveScript(run.id, lastSeq);
    const logNote = log.totalLines > log.shownLines
      ? `<p>Showing the last ${log.shownLines} of ${log.totalLines} lines. <a href="/api/runs/${esc(run.id)}/log">Full log</a></p>`
      : `<p><a href="/api/runs/${esc(run.id)}/log">Plain text</a></p>`;
    const body = `<h1>Run ${esc(run.id)} <span id="run-status">${badge(run.status)}</span></h1>
<p>Pipeline <a href="/pipelines/${esc(run.pipeline)}">${esc(run.pipeline)}</a> · commit <code>${esc(run.commit ?? 'branch head')}</code> ${esc(run.subject ?? '')} · trigger ${esc(run.trigger)}
${run.image ? `<br>image <code>${esc(run.image.ref)}</code>` : ''}${run.error ? `<br><strong>Error:</strong> ${esc(run.error)}` : ''}</p>
<p><button onclick="rebuild('${esc(run.pipeline)}')">Rebuild</button></p>
<table><tr><th>Stage</th><th>Status</th><th>Started</th><th>Finished</th><th>Error</th></tr>${stages}</table>
${run.deploys.length ? `<h2>Services</h2><table><tr><th>Service</th><th>Outcome</th><th>Serving at the end</th><th>What happened</th></tr>${run.deploys
      .map((d) => `<tr><td>${esc(d.service)}</td><td>${badge(d.outcome === 'succeeded' ? 'succeeded' : 'failed').replace('>failed<', `>${esc(d.outcome)}<`)}</td><td><code>${esc(d.image ?? '')}</code></td><td>${esc(d.message)}</td></tr>`)
      .join('')}</table>` : ''}
<h2>Log</h2>${logNote}<pre class="log">${esc(log.text)}</pre>${rebuildScript}${live}`;
    return reply.type('text/html; charset=utf-8').send(layout(`Run ${run.id}`, body));
  });
}
