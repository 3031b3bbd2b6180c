/**
 * The one place every log line passes on its way into the system (StreamReporter's
 * log path). A placeholder: it returns the line unchanged until the log-hygiene work
 * (control sequences, secrets, length) replaces it.
 */
export function sanitizeLogLine(line: string): string {
  return line;
}
