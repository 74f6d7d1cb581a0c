import { AjvCompiler } from "@fastify/ajv-compiler";
import { SerializerSelector } from "@fastify/fast-json-stringify-compiler";

/**
 * Fastify's own schema compilers (Ajv for requests, fast-json-stringify for answers), each route's
 * schema compiled when the route first meets a request instead of when the app starts. A one-shot
 * command (`myst identities new`, a foreground connect) builds the whole API to answer one request:
 * compiling every route's schemas took about half of its start (0.5 s of CPU at load ~20, profiled),
 * and every daemon and discovery replica paid it at start for routes it may never serve.
 *
 * What a request sees is unchanged: the same compiler, options and schemas, the same validator and
 * serializer functions once made. `compileAll()` makes every pending one now (tests use it to prove
 * each route's schemas compile).
 */
export interface LazySchemas {
  /** Fastify's `schemaController.compilersFactory`. */
  compilersFactory: { buildValidator: Builder; buildSerializer: Builder };
  /** Compiles every schema not yet compiled; throws what the compiler throws. Returns how many it compiled. */
  compileAll(): number;
}

type Builder = (externalSchemas: unknown, options: unknown) => (route: unknown) => CompiledFn;
type CompiledFn = ((...args: unknown[]) => unknown) & { errors?: unknown; schemaEnv?: unknown };

export function lazySchemas(): LazySchemas {
  const pending = new Set<() => CompiledFn>();
  const later = (make: () => CompiledFn): CompiledFn => {
    let made: CompiledFn | undefined;
    const get = () => {
      if (!made) {
        made = make();
        pending.delete(get);
      }
      return made;
    };
    pending.add(get);
    const fn = ((...args: unknown[]) => get()(...args)) as CompiledFn;
    // Fastify reads these of a validator: the errors of its last call, and whether it is Ajv's (then
    // it passes the parent object, so Ajv may coerce a root value). Both answered by the real one.
    Object.defineProperty(fn, "errors", { get: () => made?.errors });
    Object.defineProperty(fn, "schemaEnv", { get: () => get().schemaEnv });
    return fn;
  };
  const deferred =
    (selector: Builder): Builder =>
    (externalSchemas, options) => {
      const compile = selector(externalSchemas, options);
      return (route) => {
        // A compiler of our own makes Fastify skip its lower-casing of header schemas' keys: none may exist.
        if ((route as { httpPart?: string }).httpPart === "headers")
          throw new Error("a route declares a header schema: lazy-schemas.ts does not lower-case its keys as Fastify's own set-up would");
        return later(() => compile(route));
      };
    };
  return {
    compilersFactory: { buildValidator: deferred(AjvCompiler() as unknown as Builder), buildSerializer: deferred(SerializerSelector() as unknown as Builder) },
    compileAll: () => {
      const all = [...pending];
      for (const get of all) get();
      return all.length;
    },
  };
}
