// A Backstop hook plugin in JavaScript (componentize-js, world `hook-plugin`).
// It annotates every finished backup and logs each hook point it sees.
import { log, configGet } from 'backstop:plugin/host@0.1.0';

export const hooks = {
  onHook(ctx) {
    log('info', `js-hello at ${ctx.point} for job ${ctx.job.jobId}`);
    if (ctx.point === 'post-backup') {
      const greeting = configGet('greeting') ?? 'hello';
      return { tag: 'proceed', val: [`js-hello says ${greeting}`] };
    }
    return { tag: 'proceed', val: [] };
  },
};
