// Whether the server extension answers, shared by every view: one place decides to
// show the "not enabled" message, and views that poll go quiet while the API is away.

import { ISignal, Signal } from '@lumino/signaling';

import { ApiUnavailable } from './api';

export class ApiState {
  /** null until a first answer; then whether the API answered the last request. */
  get available(): boolean | null {
    return this._available;
  }

  /** Why the API is unavailable (a sentence for the user), or ''. */
  get message(): string {
    return this._message;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A request answered. */
  ok(): void {
    this._set(true, '');
  }

  /** A request failed: note it when it says the API is not there. Returns the error. */
  fail(error: unknown): unknown {
    if (error instanceof ApiUnavailable) {
      this._set(false, error.message);
    }
    return error;
  }

  private _set(available: boolean, message: string): void {
    if (available !== this._available || message !== this._message) {
      this._available = available;
      this._message = message;
      this._changed.emit();
    }
  }

  private _available: boolean | null = null;
  private _message = '';
  private _changed = new Signal<this, void>(this);
}

/** A one-second-resolution clock aligned with the server's (its `now` answers). */
export class ServerClock {
  /** Record the server's time as just answered. */
  sync(serverNow: number | null | undefined): void {
    if (typeof serverNow === 'number' && Number.isFinite(serverNow)) {
      this._offset = serverNow - Date.now() / 1000;
    }
  }

  /** The server's time now, in Unix seconds. */
  now(): number {
    return Date.now() / 1000 + this._offset;
  }

  private _offset = 0;
}
