/** DOM helpers shared by the example pages. */

/** The element with this id (a page that lacks it is broken: throws). */
export const byId = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page: #${id} is missing`);
  return el as T;
};
