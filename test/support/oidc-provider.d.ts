// oidc-provider ships no type declarations; the tests use a small part of it.
declare module 'oidc-provider' {
  const Provider: new (issuer: string, config: unknown) => { callback(): (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void };
  export default Provider;
}
