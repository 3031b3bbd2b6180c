export interface StepLine {
  step: string;
  kind: 'title' | 'output' | 'status';
  status?: 'done' | 'cached' | 'error' | 'canceled';
  text: string;
}
export function stepLine(line: string): StepLine | null;
export const STAGE_LABELS: Record<string, string>;
export function stripAnsi(s: string): string;
