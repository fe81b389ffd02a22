import type { Event, KeelEventData } from "./generated/protocol";

/** A durable event whose `data` is typed by its `type`. */
export type TypedEvent<T extends keyof KeelEventData> = Event & { type: T; data: KeelEventData[T] };

/** Narrows an event to one type, typing its `data` from the schema's event table. */
export function isEvent<T extends keyof KeelEventData>(event: Event, type: T): event is TypedEvent<T> {
  return event.type === type;
}
