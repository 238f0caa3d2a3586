// A small registry with the contract of Odoo's (@web/core/registry), enough
// for the demo back office to load services the way the Odoo web client does.
//   registry.category(name)          -> the category, created on first use
//   category.add(key, value, {force}) throws on a taken key unless force
//   category.get(key[, default]), contains(key), getAll(), getEntries(), remove(key)
// startServices(env) starts every service of the "services" category (after
// the services it depends on) and puts what each start() returns into
// env.services[name].

export class DuplicatedKeyError extends Error {}

class Category {
  constructor(name) {
    this.name = name;
    this.content = new Map();
  }
  add(key, value, { force = false } = {}) {
    if (this.content.has(key) && !force) {
      throw new DuplicatedKeyError(`Cannot add key "${key}" in the "${this.name}" registry: it already exists`);
    }
    this.content.set(key, value);
    return this;
  }
  get(key, defaultValue) {
    if (this.content.has(key)) return this.content.get(key);
    if (arguments.length > 1) return defaultValue;
    throw new Error(`Cannot find key "${key}" in the "${this.name}" registry`);
  }
  contains(key) {
    return this.content.has(key);
  }
  remove(key) {
    this.content.delete(key);
  }
  getAll() {
    return [...this.content.values()];
  }
  getEntries() {
    return [...this.content.entries()];
  }
}

class Registry {
  constructor() {
    this.categories = new Map();
  }
  category(name) {
    if (!this.categories.has(name)) this.categories.set(name, new Category(name));
    return this.categories.get(name);
  }
}

export const registry = new Registry();

export async function startServices(env) {
  env.services = env.services || {};
  const started = new Map();
  const services = registry.category("services");
  const startOne = (name) => {
    if (!started.has(name)) {
      const service = services.get(name);
      started.set(
        name,
        Promise.all((service.dependencies || []).map(startOne)).then(async () => {
          const deps = Object.fromEntries((service.dependencies || []).map((d) => [d, env.services[d]]));
          env.services[name] = await service.start(env, deps);
          return env.services[name];
        }),
      );
    }
    return started.get(name);
  };
  await Promise.all(services.getEntries().map(([name]) => startOne(name)));
  return env.services;
}
